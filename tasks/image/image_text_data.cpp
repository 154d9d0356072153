#include "fm/tasks/image_text_data.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <sstream>

#include "fm/data/idx.h"
#include "fm/data/wds.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/strings.h"

namespace fm::tasks {
namespace {

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// ITU-R 601-2 luma, as PIL's convert("L").
image::Image to_gray(const image::Image& rgb) {
  image::Image g{rgb.height, rgb.width, 1, std::vector<uint8_t>(size_t(rgb.height) * size_t(rgb.width))};
  for (size_t i = 0; i < g.data.size(); ++i) {
    const uint8_t* p = &rgb.data[3 * i];
    g.data[i] = uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
  }
  return g;
}

image::Image to_rgb(const image::Image& gray) {
  image::Image c{gray.height, gray.width, 3, std::vector<uint8_t>(gray.data.size() * 3)};
  for (size_t i = 0; i < gray.data.size(); ++i) c.data[3 * i] = c.data[3 * i + 1] = c.data[3 * i + 2] = gray.data[i];
  return c;
}

image::Image sample_image(const data::ImageTextSample& s, int64_t channels) {
  image::Image img = s.pixels.empty() ? image::decode(s.image.data(), s.image.size(), s.origin)
                                      : image::Image{s.height, s.width, s.channels, s.pixels};
  if (img.channels == int(channels)) return img;
  if (channels == 1 && img.channels == 3) return to_gray(img);
  if (channels == 3 && img.channels == 1) return to_rgb(img);
  error(s.origin, ": an image of ", img.channels, " channels cannot become ", channels);
}

}  // namespace

std::vector<std::string> parse_class_list(const std::string& value) {
  if (value == "fashion-mnist") return data::fashion_mnist_classes();
  std::vector<std::string> out;
  std::stringstream ss(value);
  for (std::string item; std::getline(ss, item, ',');)
    if (!trim(item).empty()) out.push_back(trim(item));
  return out;
}

std::shared_ptr<const data::ImageTextSource> open_image_text(const std::string& spec,
                                                             const std::vector<std::string>& classes) {
  if (spec.empty()) error("data: no source given");
  if (spec.rfind("idx:", 0) == 0) {
    const std::string files = spec.substr(4);
    const size_t comma = files.find(',');
    if (comma == std::string::npos) error("data: '", spec, "': an IDX source is idx:IMAGES,LABELS");
    return data::open_idx(trim(files.substr(0, comma)), trim(files.substr(comma + 1)), classes);
  }
  if (ends_with(spec, ".tar") || spec.find('{') != std::string::npos) {
    std::vector<std::string> shards;
    std::stringstream ss(spec);
    for (std::string s; ss >> s;) shards.push_back(s);
    return data::open_webdataset(shards);
  }
  return data::open_caption_folder(spec);
}

text::BpeTokenizer caption_tokenizer(const std::string& path) {
  if (!path.empty()) return text::BpeTokenizer::load(path);
  text::BpeTrainOptions o;  // no merges: the 256 bytes, then <|endoftext|>
  o.vocab_size = 257;
  o.special_tokens = {"<|endoftext|>"};
  return text::BpeTokenizer::train("", o);
}

int32_t end_of_text_id(const text::BpeTokenizer& tokenizer) {
  const auto& special = tokenizer.special_tokens();
  auto it = special.find("<|endoftext|>");
  if (it == special.end()) error("tokenizer: captions need an <|endoftext|> special token");
  return it->second;
}

namespace {
std::atomic<int64_t> g_truncated{0};
}  // namespace

int64_t captions_truncated() { return g_truncated.load(std::memory_order_relaxed); }

std::pair<Tensor, int64_t> tokenize_caption(const text::BpeTokenizer& tokenizer, const std::string& caption,
                                            int64_t context_length) {
  std::vector<int32_t> ids = tokenizer.encode(caption);
  if (int64_t(ids.size()) > context_length - 1) {
    ids.resize(size_t(context_length - 1));
    g_truncated.fetch_add(1, std::memory_order_relaxed);
  }
  const int64_t eot = int64_t(ids.size());
  std::vector<int64_t> row(size_t(context_length), 0);
  std::copy(ids.begin(), ids.end(), row.begin());
  row[size_t(eot)] = end_of_text_id(tokenizer);
  return {tensor(row), eot};
}

std::vector<int64_t> parse_int_list(const std::string& key, const std::string& value) {
  std::vector<int64_t> out;
  for (const auto& item : parse_class_list(value)) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used != item.size()) error("config: key '", key, "': '", item, "' is not an integer");
    out.push_back(v);
  }
  if (out.empty()) error("config: key '", key, "' is empty");
  return out;
}

std::vector<float> parse_floats(const std::string& key, const std::string& value) {
  std::vector<float> out;
  for (const auto& item : parse_class_list(value)) {
    try {
      out.push_back(std::stof(item));
    } catch (...) {
      error("config: key '", key, "': '", item, "' is not a number");
    }
  }
  if (out.empty()) error("config: key '", key, "' is empty");
  return out;
}

ImageTransformOptions image_transform_options(const train::Config& c) {
  ImageTransformOptions o;
  o.size = c.get_int("model.image_size");
  o.channels = c.get_int("model.channels");
  o.random_crop = c.get_bool("data.random_crop");
  o.crop_scale_min = c.get_double("data.crop_scale_min");
  o.hflip = c.get_bool("data.hflip");
  o.mean = parse_floats("data.mean", c.get_string("data.mean"));
  o.std = parse_floats("data.std", c.get_string("data.std"));
  return o;
}

std::vector<std::string> caption_templates(const train::Config& c) {
  return c.get_bool("data.templates") ? data::default_caption_templates() : std::vector<std::string>{};
}

namespace {

// The image half of the transforms: decode, crop or resize to o.size, maybe
// flip, normalise. Augmentation draws from gen, the sample's own stream.
struct ImagePipeline {
  ImageTransformOptions o;
  std::vector<float> channel_mean, channel_std;

  explicit ImagePipeline(const ImageTransformOptions& opt) : o(opt), channel_mean(opt.mean), channel_std(opt.std) {
    for (const auto* v : {&o.mean, &o.std})
      if (v->size() != 1 && int64_t(v->size()) != o.channels)
        error("data: mean and std need 1 or ", o.channels, " values, got ", v->size());
    channel_mean.resize(size_t(o.channels), o.mean[0]);
    channel_std.resize(size_t(o.channels), o.std[0]);
  }

  Tensor operator()(const data::ImageTextSample& s, Generator& gen) const {
    auto uniform = [&] { return rand({1}, {}, &gen).item(); };
    image::Image img = sample_image(s, o.channels);
    const int size = int(o.size);
    if (o.random_crop) {
      const image::CropBox box = image::random_resized_crop_box(img.height, img.width, uniform, o.crop_scale_min);
      img = image::resize(image::crop(img, box.top, box.left, box.height, box.width), size, size);
    } else if (img.height != size || img.width != size) {
      img = image::center_crop(image::resize_shorter(img, size), size, size);
    }
    if (o.hflip && uniform() < 0.5) img = image::hflip(img);
    return image::to_tensor(img, channel_mean, channel_std);
  }
};

}  // namespace

data::Transform image_text_transform(const ImageTransformOptions& o, const text::BpeTokenizer& tokenizer,
                                     int64_t context_length, std::vector<std::string> templates) {
  const ImagePipeline pipeline(o);
  return [=](const data::ImageTextSample& s, uint64_t seed) {
    Generator gen(seed);  // this sample's own stream: augmentation is the same on any worker
    Tensor image = pipeline(s, gen);
    std::string caption = s.caption;
    // The caption is a class name; the template is chosen from the sample seed too.
    if (!templates.empty()) caption = data::class_caption(s.caption, seed >> 1, templates);
    auto [ids, eot] = tokenize_caption(tokenizer, caption, context_length);
    return data::Example{{"image", image}, {"text", ids}, {"eot", scalar_tensor(double(eot), DType::i64)}};
  };
}

data::Transform image_transform(const ImageTransformOptions& o) {
  const ImagePipeline pipeline(o);
  return [=](const data::ImageTextSample& s, uint64_t seed) {
    Generator gen(seed);  // the same stream image_text_transform gives this sample's image
    return data::Example{{"image", pipeline(s, gen)}};
  };
}

void for_each_batch(const data::ImageTextSource& source, const data::Transform& transform, int64_t batch_size,
                    int64_t limit, const std::function<void(const data::LoaderBatch&)>& f) {
  data::LoaderOptions o;
  o.batch_size = batch_size;
  o.shuffle = false;
  o.drop_last = false;
  // The loader shares the source; this one is borrowed for the call.
  std::shared_ptr<const data::ImageTextSource> borrowed(&source, [](const data::ImageTextSource*) {});
  data::DataLoader loader(borrowed, transform, o);
  const int64_t n = limit > 0 ? std::min(limit, source.size()) : source.size();
  for (int64_t seen = 0; seen < n && loader.position() < loader.batches_per_epoch();) {
    data::LoaderBatch b = loader.next();
    const int64_t take = std::min<int64_t>(int64_t(b.indices.size()), n - seen);
    for (auto& [name, t] : b.tensors) t = t.narrow(0, 0, take);
    b.indices.resize(size_t(take));
    f(b);
    seen += take;
  }
}

void declare_image_data_keys(train::Config& c, const std::string& val_help) {
  c.add_string("data.train", "", "training images: a caption folder/file, WebDataset shards or idx:IMAGES,LABELS")
      .add_string("data.val", "", val_help)
      .add_string("data.classes", "", "class names, comma-separated, or 'fashion-mnist' (captions of IDX sources)")
      .add_int("data.workers", 2, "loader threads (0: load in the training thread)")
      .add_bool("data.random_crop", false, "RandomResizedCrop augmentation (else resize + centre crop)")
      .add_double("data.crop_scale_min", 0.35, "smallest crop area fraction of RandomResizedCrop")
      .add_bool("data.hflip", false, "random horizontal flips (not for captions that say left and right)")
      .add_string("data.mean", "0.5", "normalisation mean per channel (comma-separated, or one value)")
      .add_string("data.std", "0.5", "normalisation std per channel");
}

namespace {
data::LoaderOptions train_loader_options(const train::Config& c, const train::RunContext& ctx) {
  data::LoaderOptions o;
  o.rank = ctx.rank;
  o.world_size = ctx.world_size;
  o.batch_size = c.get_int("train.batch_size");
  o.workers = int(c.get_int("data.workers"));
  o.seed = uint64_t(c.get_int("train.seed"));
  return o;
}
}  // namespace

TrainImages::TrainImages(const train::Config& c, const train::RunContext& ctx, const std::vector<std::string>& classes,
                         data::Transform transform)
    : loader_(open_image_text(c.get_string("data.train"), classes), std::move(transform),
              train_loader_options(c, ctx)) {}

data::LoaderBatch TrainImages::next() {
  data::LoaderBatch b = loader_.next();
  const auto messages = loader_.skip_messages();  // the first few; the count is in b.skipped
  for (; reported_ < messages.size(); ++reported_) std::fprintf(stderr, "fm train: skipped %s\n", messages[reported_].c_str());
  return b;
}

}  // namespace fm::tasks

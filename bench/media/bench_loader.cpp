// Image-text loading throughput: fm::data::DataLoader over JPEG WebDataset
// shards (python3 bench/peers/make_jpeg_shards.py) with CLIP's training transform
// (fm::tasks::image_text_transform: decode to RGB, RandomResizedCrop to
// --size, random horizontal flip, to_tensor + normalise, caption -> UTF-8
// bytes + <|endoftext|>, padded to --context). Peer:
// bench/peers/loader_torchvision.py (PIL decode, torchvision transforms,
// torch DataLoader) on the same shards, with the same options.
//
// usage: bench_loader --shards 'DIR/jpeg-{000000..000004}.tar' [--workers 1,2]
//          [--batch 64] [--size 64] [--epochs 2] [--scale-min 0.08]
//          [--context 32] [--threads 1] [--no-flip]
// One JSON line per worker count: images_per_s (the batches after the first,
// which starts the workers), per_worker, first_batch_s, images, skipped.
#include <cstdio>

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/data/wds.h"
#include "fm/error.h"
#include "fm/runtime.h"
#include "fm/tasks/image_text_data.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(std::stoi(item));
  return out;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_loader --shards PATTERN [--workers 1,2] [--batch 64] [--size 64] [--epochs 2]\n"
               "                    [--scale-min 0.08] [--context 32] [--threads 1] [--no-flip]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shards;
  std::vector<int> workers = {1, 2};
  int64_t batch = 64, size = 64, context = 32, epochs = 2;
  double scale_min = 0.08;
  int threads = 1;
  bool flip = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_loader: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--shards") shards = value();
    else if (a == "--workers") workers = parse_ints(value());
    else if (a == "--batch") batch = std::stoll(value());
    else if (a == "--size") size = std::stoll(value());
    else if (a == "--epochs") epochs = std::stoll(value());
    else if (a == "--scale-min") scale_min = std::stod(value());
    else if (a == "--context") context = std::stoll(value());
    else if (a == "--threads") threads = std::stoi(value());
    else if (a == "--no-flip") flip = false;
    else return usage();
  }
  if (shards.empty() || workers.empty() || epochs < 1 || batch < 1) return usage();
  try {
    // Intra-op threads of the calling thread, which stacks the batches
    // (torch's DataLoader workers run with one thread each).
    fm::set_num_threads(threads);
    std::vector<std::string> patterns;
    std::stringstream ss(shards);
    for (std::string s; ss >> s;) patterns.push_back(s);
    const auto t_open = Clock::now();
    const std::shared_ptr<const fm::data::ImageTextSource> source = fm::data::open_webdataset(patterns);
    const double open_s = seconds_since(t_open);

    fm::tasks::ImageTransformOptions io;
    io.size = size;
    io.channels = 3;
    io.random_crop = true;  // torchvision RandomResizedCrop(size, scale=(scale_min, 1))
    io.crop_scale_min = scale_min;
    io.hflip = flip;
    io.mean = {0.5f, 0.5f, 0.5f};
    io.std = {0.5f, 0.5f, 0.5f};
    const fm::text::BpeTokenizer tokenizer = fm::tasks::caption_tokenizer("");  // bytes + <|endoftext|>
    const fm::data::Transform transform = fm::tasks::image_text_transform(io, tokenizer, context, {});

    for (const int w : workers) {
      fm::data::LoaderOptions lo;
      lo.batch_size = batch;
      lo.workers = w;
      lo.seed = 1337;
      const auto t0 = Clock::now();
      fm::data::DataLoader loader(source, transform, lo);
      const int64_t total = loader.batches_per_epoch() * epochs;
      fm::data::LoaderBatch b = loader.next();  // starts the workers
      const double first_s = seconds_since(t0);
      const auto t1 = Clock::now();
      int64_t images = 0;
      for (int64_t k = 1; k < total; ++k) {
        b = loader.next();
        images += int64_t(b.indices.size());
      }
      const double steady_s = seconds_since(t1);
      const auto& img = b.tensors.at("image");
      const double ips = images > 0 ? double(images) / steady_s : 0.0;
      std::printf(
          "{\"loader\": \"libfm\", \"workers\": %d, \"images_per_s\": %.1f, \"per_worker\": %.1f, "
          "\"first_batch_s\": %.3f, \"images\": %lld, \"batch\": %lld, \"size\": %lld, \"skipped\": %lld, "
          "\"samples\": %lld, \"open_s\": %.3f, \"image_shape\": [%lld, %lld, %lld, %lld]}\n",
          w, ips, w > 0 ? ips / w : ips, first_s, (long long)images, (long long)batch, (long long)size,
          (long long)loader.skipped(), (long long)source->size(), open_s, (long long)img.size(0),
          (long long)img.size(1), (long long)img.size(2), (long long)img.size(3));
      std::fflush(stdout);
    }
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "bench_loader: %s\n", e.what());
    return 1;
  }
  return 0;
}

// [task] kind = diffusion: text-to-image with a DiT denoiser (DESIGN.md,
// diffusion objective). Captions condition it through a caption encoder
// trained with it or the frozen text tower of a CLIP run; condition dropout
// teaches the unconditional model that classifier-free guidance needs.
// Evaluated by a validation loss at fixed timesteps and noise, and by how
// often generated images depict their captions (a checker independent of
// the model).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/ops.h"
#include "fm/tasks/autoencoder.h"
#include "fm/tasks/clip.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"

namespace fm::tasks {
namespace {

void declare_diffusion_keys(train::Config& c) {
  c.add_int("model.image_size", 32, "image side in pixels (images are resized and cropped to it)")
      .add_int("model.channels", 3, "image channels: 3 (RGB) or 1 (luminance)")
      .add_int("model.patch_size", 2, "DiT patch side")
      .add_int("model.width", 256, "DiT width")
      .add_int("model.layers", 6, "DiT blocks")
      .add_int("model.heads", 4, "DiT heads")
      .add_int("model.mlp_hidden", 0, "DiT MLP width (0: 4 x width)")
      .add_bool("model.cross_attention", true, "DiT blocks attend to the caption's token features")
      .add_bool("model.pooled", true, "the pooled caption joins the timestep embedding (adaLN)")
      .add_string("model.text_encoder", "", "a CLIP run whose frozen text tower encodes captions (empty: train one)")
      .add_int("model.vocab_size", 0, "caption vocabulary (0: the tokenizer's)")
      .add_int("model.context_length", 24, "caption tokens, end-of-text included")
      .add_int("model.text_width", 128, "caption encoder width (set from the CLIP run with text_encoder)")
      .add_int("model.text_layers", 2, "caption encoder blocks")
      .add_int("model.text_heads", 4, "caption encoder heads")
      .add_int("model.pooled_dim", 0, "pooled caption width (0: text_width; the CLIP run's embed_dim with text_encoder)")
      .add_string("model.autoencoder", "", "an autoencoder run: the DiT denoises its latents (empty: pixels)")
      .add_int("model.latent_channels", 0, "latent channels (set from model.autoencoder; 0: pixel space)")
      .add_int("model.latent_size", 0, "latent side (set from model.autoencoder)")
      .add_double("model.latent_scale", 0.0, "latents are multiplied by this (0: 1 / latent_std of the autoencoder run's last evaluation)")
      .add_bool("data.templates", false, "captions are class names: put them into prompt templates")
      .add_string("data.tokenizer", "", "caption tokenizer file (empty: bytes + <|endoftext|>)")
      .add_int("train.eval_samples", 512, "held-out images for the validation loss (0: all)")
      .add_string("eval.checker", "", "judge of generated images: shapes, or fashion-mnist (a classifier trained on data.train) (empty: none)")
      .add_int("eval.images", 64, "captions of data.val generated and judged at each evaluation (0: all)")
      .add_int("eval.samples", 16, "prompts (the first of data.val) in each sample grid");
  declare_image_data_keys(c, "held-out pairs: validation loss, sample prompts and adherence");
  declare_diffusion_objective_keys(c);
}

// The last value of `key` in a run's metrics.jsonl, or NaN.
double last_metric(const std::string& run_dir, const std::string& key) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  double value = NAN;
  const std::string needle = "\"" + key + "\":";
  for (std::string line; std::getline(in, line);)
    if (const size_t at = line.find(needle); at != std::string::npos) value = std::strtod(line.c_str() + at + needle.size(), nullptr);
  return value;
}

// Latent diffusion: the DiT's input is the autoencoder's latents, scaled to
// unit variance as SD's scaling_factor does.
void resolve_latents(train::Config& c) {
  const std::string ae_dir = c.get_string("model.autoencoder");
  if (ae_dir.empty()) return;
  const train::Config ae = train::load_run_config(ae_dir);
  if (ae.get_string("task.kind") != "autoencoder") error("config: model.autoencoder: ", ae_dir, " is not an autoencoder run");
  for (const char* k : {"model.image_size", "model.channels"})
    if (ae.get_int(k) != c.get_int(k))
      error("config: ", k, " is ", c.get_int(k), " but the autoencoder run ", ae_dir, " was trained with ", ae.get_int(k));
  const AutoencoderOptions o = autoencoder_options(ae);
  c.set("model.latent_channels", std::to_string(o.latent_channels), "model.autoencoder");
  c.set("model.latent_size", std::to_string(o.image_size >> (o.channel_mult.size() - 1)), "model.autoencoder");
  if (c.get_double("model.latent_scale") > 0) return;
  const double sd = last_metric(ae_dir, "latent_std");
  if (!(sd > 0)) error("config: model.autoencoder: ", ae_dir, "/metrics.jsonl holds no latent_std (train it to an evaluation first)");
  c.set("model.latent_scale", std::to_string(1.0 / sd), "model.autoencoder");
}

void resolve_diffusion(train::Config& c) {
  resolve_latents(c);
  if (const std::string clip_dir = c.get_string("model.text_encoder"); !clip_dir.empty()) {
    const train::Config clip = train::load_run_config(clip_dir);
    if (clip.get_string("task.kind") != "clip") error("config: model.text_encoder: ", clip_dir, " is not a clip run");
    for (const char* k : {"data.tokenizer", "model.vocab_size", "model.context_length", "model.text_width",
                          "model.text_layers", "model.text_heads"})
      c.set(k, clip.text(k), "model.text_encoder");
    c.set("model.pooled_dim", clip.text("model.embed_dim"), "model.text_encoder");
  }
  if (c.get_int("model.vocab_size") == 0)
    c.set("model.vocab_size", std::to_string(caption_tokenizer(c.get_string("data.tokenizer")).vocab_size()),
          "data.tokenizer");
  if (c.get_int("model.pooled_dim") == 0) c.set("model.pooled_dim", c.text("model.text_width"), "model.text_width");
  resolve_diffusion_objective(c);
}

class DiffusionTask : public train::Task {
 public:
  explicit DiffusionTask(const train::Config& c)
      : cfg_(c), tokenizer_(caption_tokenizer(c.get_string("data.tokenizer"))), diffusion_(diffusion_options(c)) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    rank_ = ctx.rank, world_size_ = ctx.world_size;
    B_ = cfg_.get_int("train.batch_size");
    flow_ = diffusion_.options().process == "flow";
    cond_drop_ = cfg_.get_double("diffusion.cond_drop");
    if (cond_drop_ < 0 || cond_drop_ >= 1) error("config: key 'diffusion.cond_drop' must be in [0, 1), got ", cond_drop_);
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed"));
    manual_seed(seed);
    noise_gen_.manual_seed(seed * 2 + 1);
    drop_gen_.manual_seed(seed * 2 + 2);
    objectives::make_sampler(cfg_.get_string("diffusion.sampler"), sampler_options(cfg_));  // a bad name fails now
    if (const std::string checker = cfg_.get_string("eval.checker");
        !checker.empty() && checker != "shapes" && checker != "fashion-mnist")
      error("config: key 'eval.checker': '", checker, "' is not shapes or fashion-mnist");
    const std::string clip_dir = cfg_.get_string("model.text_encoder");
    CaptionEncoderOptions text{cfg_.get_int("model.vocab_size"), cfg_.get_int("model.context_length"),
                               cfg_.get_int("model.text_width"), cfg_.get_int("model.text_layers"),
                               cfg_.get_int("model.text_heads")};
    model_ = std::make_unique<TextToImage>(dit_options(cfg_), clip_dir.empty() ? &text : nullptr);
    if (!clip_dir.empty()) {
      frozen_ = std::move(load_clip_run(clip_dir).model);
      frozen_->to(device_);
    }
    if (const std::string ae = cfg_.get_string("model.autoencoder"); !ae.empty()) {
      autoencoder_ = load_autoencoder_run(ae);
      autoencoder_->to(device_);
      latent_scale_ = cfg_.get_double("model.latent_scale");
    }
    auto [null_ids, null_eot] = tokenize_caption(tokenizer_, "", text.context_length);
    null_ids_ = null_ids.unsqueeze(0);
    null_eot_ = null_eot;
    const auto& o = model_->dit->options;
    if (!ctx.open_data) {
      bench_images_ = randn({B_, o.channels, o.image_size, o.image_size}).to(device_);
      bench_ids_ = randint(0, text.vocab_size, {B_, text.context_length}).to(device_);
      bench_eot_ = full({B_}, double(text.context_length - 1), DType::i64).to(device_);
      return;
    }
    classes_ = parse_class_list(cfg_.get_string("data.classes"));
    ImageTransformOptions io = image_transform_options(cfg_);
    const auto templates = caption_templates(cfg_);
    train_transform_ = image_text_transform(io, tokenizer_, text.context_length, templates);
    io.random_crop = io.hflip = false;
    eval_transform_ = image_text_transform(io, tokenizer_, text.context_length, templates);
    train_.emplace(cfg_, ctx, classes_, train_transform_);
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) val_ = open_image_text(v, classes_);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    Tensor ids = b.tensors.at("text"), eot = b.tensors.at("eot");
    const int64_t dropped = drop_captions(ids, eot);
    const objectives::Noised n = add_noise_world(to_x0(b.tensors.at("image").to(device_)));
    Tensor loss = diffusion_.loss(model_->denoise(n.x_t, n.timesteps, captions(ids.to(device_), eot.to(device_))), n);
    return {loss, {{"cond_dropped", double(dropped) / double(ids.size(0))}, {"skipped", double(b.skipped)}}};
  }

  train::StepOutput bench_step() override {
    const objectives::Noised n = diffusion_.add_noise(bench_images_, noise_gen_);
    return {diffusion_.loss(model_->denoise(n.x_t, n.timesteps, captions(bench_ids_, bench_eot_)), n), {}};
  }

  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    if (!val_) return out;
    out["val_loss"] = validation_loss();
    const std::string checker = cfg_.get_string("eval.checker");
    if (checker == "fashion-mnist") {
      if (classes_.empty()) error("config: eval.checker = fashion-mnist needs data.classes");
      if (!judge_) {  // trained once per process on the real training set, then validated on data.val
        judge_ = std::make_unique<ClassJudge>(*open_image_text(cfg_.get_string("data.train"), classes_), eval_transform_,
                                              int64_t(classes_.size()));
        judge_figures_ = {{"judge_accuracy", judge_->accuracy(*val_, eval_transform_, 0)},
                          {"judge_wrong_caption_accept", judge_->accuracy(*val_, eval_transform_, 0, 1)}};
      }
      out.insert(judge_figures_.begin(), judge_figures_.end());
      const int64_t per_class = std::max<int64_t>(1, cfg_.get_int("eval.images") / int64_t(classes_.size()));
      const auto a = class_adherence(pipeline(), *judge_, classes_, per_class, B_, generate_defaults(cfg_));
      out.insert(a.begin(), a.end());
    } else if (!checker.empty()) {
      const auto a = adherence(pipeline(), *val_, checker, cfg_.get_int("eval.images"), B_, generate_defaults(cfg_));
      out.insert(a.begin(), a.end());
    }
    return out;
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (!val_) return;
    std::vector<std::string> prompts;
    const int64_t n = std::min(cfg_.get_int("eval.samples"), val_->size());
    for (int64_t i = 0; i < n; ++i) prompts.push_back(val_->read(i).caption);
    if (prompts.empty()) return;
    int64_t truncated = 0;  // captions cut to the context, as training cuts them
    const Tensor grid = image_grid(pipeline().generate(prompts, generate_defaults(cfg_), &truncated), 4);
    const image::Image img = image::from_tensor(grid);
    sink.image_png("samples", image::encode_png(img), img.height, img.width);
    std::string text;
    for (size_t i = 0; i < prompts.size(); ++i) text += std::to_string(i) + ": " + prompts[i] + "\n";
    sink.text("prompts", text);
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "img"; }
  double flops_per_sample() const override {
    const double L = double(cfg_.get_int("model.context_length"));
    return dit_flops_per_image(model_->dit->options, int64_t(L)) +
           (model_->text ? 6.0 * double(model_->text->num_parameters()) * L : 0.0);
  }

  train::TaskState state() const override {
    return {{{"train", train_ ? train_->position() : 0}}, {{"noise", noise_gen_.state()}, {"cond_drop", drop_gen_.state()}}, {}};
  }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
    if (auto it = s.rngs.find("noise"); it != s.rngs.end()) noise_gen_.set_state(it->second);
    if (auto it = s.rngs.find("cond_drop"); it != s.rngs.end()) drop_gen_.set_state(it->second);
  }

 private:
  // What the DiT denoises: the images, or their latents (posterior means,
  // scaled) under a frozen autoencoder.
  Tensor to_x0(const Tensor& images) const {
    if (!autoencoder_) return images;
    NoGradGuard ng;
    return autoencoder_->encode(images).mean * latent_scale_;
  }

  CaptionFeatures captions(const Tensor& ids, const Tensor& eot) const {
    if (!frozen_) return model_->text->forward(ids, eot);
    NoGradGuard ng;  // the CLIP tower stays as trained
    return clip_caption_features(*frozen_, ids, eot);
  }

  // Condition dropout: each row becomes the empty caption with probability
  // diffusion.cond_drop. Returns how many did.
  // Noise and times for the world's batch from the one stream every rank
  // holds, this rank's rows kept. The loader gives rank r the world batch's
  // rows j * W + r, so those are its rows here too: W ranks draw what one
  // rank with the whole batch draws, and the streams stay equal on every
  // rank (rank 0's saved state resumes them all).
  objectives::Noised add_noise_world(const Tensor& x0) {
    if (world_size_ == 1) return diffusion_.add_noise(x0, noise_gen_);
    const int64_t B = x0.size(0), W = world_size_;
    std::vector<Tensor> slots(size_t(W), zeros_like(x0));
    slots[size_t(rank_)] = x0;
    std::vector<int64_t> dims = x0.shape().vec();
    dims[0] = W * B;
    objectives::Noised n = diffusion_.add_noise(stack(slots, 1).reshape(Shape(dims)), noise_gen_);
    for (Tensor* t : {&n.x_t, &n.target, &n.timesteps, &n.weights, &n.alpha, &n.sigma}) {
      if (!t->defined()) continue;
      std::vector<int64_t> d = t->shape().vec();
      d[0] = W;
      d.insert(d.begin(), B);
      *t = t->reshape(Shape(d)).select(1, rank_).contiguous();
    }
    return n;
  }

  int64_t drop_captions(Tensor& ids, Tensor& eot) {
    if (cond_drop_ <= 0) return 0;
    const int64_t B = ids.size(0);
    const std::vector<float> u = rand({B, int64_t(world_size_)}, TensorOptions(DType::f32), &drop_gen_)
                                     .select(1, rank_)
                                     .contiguous()
                                     .to_vector<float>();  // rows j * W + r of the world's draw
    int64_t dropped = 0;
    for (int64_t i = 0; i < ids.size(0); ++i) {
      if (u[size_t(i)] >= cond_drop_) continue;
      if (dropped++ == 0) ids = ids.clone(), eot = eot.clone();
      ids.select(0, i).copy_(null_ids_.select(0, 0));
      eot.select(0, i).fill_(double(null_eot_));
    }
    return dropped;
  }

  // The loss on the first train.eval_samples held-out images, each at a
  // fixed time (evenly spread over the process) with fixed noise, so
  // evaluations and runs compare.
  double validation_loss() {
    Generator gen(12345);
    double sum = 0;
    int64_t count = 0;
    const int64_t limit = cfg_.get_int("train.eval_samples");
    const int64_t total = limit > 0 ? std::min(limit, val_->size()) : val_->size();
    for_each_batch(*val_, eval_transform_, B_, limit, [&](const data::LoaderBatch& b) {
      const Tensor x0 = to_x0(b.tensors.at("image").to(device_));
      const int64_t n = x0.size(0);
      std::vector<float> times(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const double frac = (double(count + i) + 0.5) / double(total);  // evenly over (0, 1)
        times[size_t(i)] = float(flow_ ? frac : std::floor(frac * double(diffusion_.options().num_train_timesteps)));
      }
      const Tensor noise = randn(x0.shape(), TensorOptions(DType::f32), &gen).to(device_);
      const objectives::Noised nz = diffusion_.add_noise(x0, tensor(times).to(device_), noise);
      const Tensor pred = model_->denoise(nz.x_t, nz.timesteps, captions(b.tensors.at("text").to(device_), b.tensors.at("eot").to(device_)));
      sum += diffusion_.loss(pred, nz).item() * double(n);
      count += n;
    });
    return count ? sum / double(count) : NAN;
  }

  TextToImagePipeline& pipeline() {
    if (!pipeline_) pipeline_ = std::make_unique<TextToImagePipeline>(cfg_, *model_, frozen_.get(), autoencoder_.get(), tokenizer_, device_);
    return *pipeline_;
  }

  const train::Config& cfg_;
  text::BpeTokenizer tokenizer_;
  objectives::Diffusion diffusion_;
  Device device_;
  int64_t B_ = 0;
  int rank_ = 0, world_size_ = 1;
  double cond_drop_ = 0;
  bool flow_ = false;
  Generator noise_gen_, drop_gen_;
  std::unique_ptr<TextToImage> model_;
  std::unique_ptr<CLIP> frozen_;
  std::unique_ptr<Autoencoder> autoencoder_;
  double latent_scale_ = 1;
  std::unique_ptr<TextToImagePipeline> pipeline_;
  std::unique_ptr<ClassJudge> judge_;
  std::map<std::string, double> judge_figures_;
  Tensor null_ids_;
  int64_t null_eot_ = 0;
  std::vector<std::string> classes_;
  data::Transform train_transform_, eval_transform_;
  std::optional<TrainImages> train_;
  std::shared_ptr<const data::ImageTextSource> val_;
  Tensor bench_images_, bench_ids_, bench_eot_;
};

const train::TaskRegistrar registrar{{
    "diffusion",
    "text-to-image: a DiT denoiser conditioned on captions, trained with a diffusion or flow-matching loss",
    declare_diffusion_keys,
    resolve_diffusion,
    {"model.image_size", "model.channels", "model.patch_size", "model.width", "model.layers", "model.heads",
     "model.mlp_hidden", "model.cross_attention", "model.pooled", "model.text_encoder", "model.vocab_size",
     "model.context_length", "model.text_width", "model.text_layers", "model.text_heads", "model.pooled_dim",
     "model.autoencoder", "model.latent_channels", "model.latent_size"},
    [](const train::Config& c) { return std::make_unique<DiffusionTask>(c); },
}};

}  // namespace
}  // namespace fm::tasks

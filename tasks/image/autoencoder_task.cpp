// [task] kind = autoencoder: a KL autoencoder as Stable Diffusion's
// AutoencoderKL (fm/tasks/autoencoder.h), whose latents latent diffusion
// runs on. Trained on the images of image-text data (captions are ignored)
// with an L1 reconstruction loss on a sample of the posterior plus a small
// KL term; evaluated by the reconstruction of held-out images from the
// posterior mean (L1, PSNR) and by the statistics of those means (their std
// is the scale latent diffusion divides by, SD's scaling_factor).
#include <algorithm>
#include <cmath>
#include <optional>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/ops.h"
#include "fm/tasks/autoencoder.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/image_text_data.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"

namespace fm::tasks {
namespace {


void declare_autoencoder_keys(train::Config& c) {
  c.add_int("model.image_size", 32, "image side in pixels (images are resized and cropped to it)")
      .add_int("model.channels", 3, "image channels: 3 (RGB) or 1 (luminance)")
      .add_int("model.latent_channels", 4, "latent channels")
      .add_int("model.base_channels", 64, "width of the first level")
      .add_string("model.channel_mult", "1,2", "width multipliers per level (comma-separated); n levels downsample by 2^(n-1)")
      .add_int("model.res_blocks", 1, "ResNet blocks per encoder level (the decoder has one more)")
      .add_int("model.groups", 32, "GroupNorm groups (lowered to the largest divisor of a width)")
      .add_double("autoencoder.kl_weight", 1e-6, "weight of the KL term (per image, summed over latent elements) against the per-pixel L1")
      .add_int("train.eval_samples", 512, "held-out images for the evaluation (0: all)")
      .add_int("eval.samples", 8, "held-out images in each sample grid (originals above their reconstructions)");
  declare_image_data_keys(c, "held-out images: reconstruction L1, PSNR, latent statistics and sample grids");
}

class AutoencoderTask : public train::Task {
 public:
  explicit AutoencoderTask(const train::Config& c) : cfg_(c) {}

  void build(const train::RunContext& ctx) override {
    device_ = ctx.device;
    B_ = cfg_.get_int("train.batch_size");
    kl_weight_ = cfg_.get_double("autoencoder.kl_weight");
    if (kl_weight_ < 0) error("config: key 'autoencoder.kl_weight' must be >= 0, got ", kl_weight_);
    const uint64_t seed = uint64_t(cfg_.get_int("train.seed"));
    manual_seed(seed);
    noise_gen_.manual_seed(seed * 2 + 1);
    model_ = std::make_unique<Autoencoder>(autoencoder_options(cfg_));
    const auto& o = model_->options;
    if (!ctx.open_data) {
      bench_images_ = (rand({B_, o.channels, o.image_size, o.image_size}) * 2.0 - 1.0).to(device_);
      return;
    }
    ImageTransformOptions io = image_transform_options(cfg_);
    train_transform_ = image_transform(io);
    io.random_crop = io.hflip = false;  // evaluation sees every image whole
    eval_transform_ = image_transform(io);
    // The normalisation to undo for PSNR and the sample grids: [1, C, 1, 1].
    io.mean.resize(size_t(o.channels), io.mean[0]);
    io.std.resize(size_t(o.channels), io.std[0]);
    pixel_mean_ = tensor(io.mean).reshape({1, o.channels, 1, 1}).to(device_);
    pixel_std_ = tensor(io.std).reshape({1, o.channels, 1, 1}).to(device_);
    const auto classes = parse_class_list(cfg_.get_string("data.classes"));
    train_.emplace(cfg_, ctx, classes, train_transform_);
    if (const std::string v = cfg_.get_string("data.val"); !v.empty()) val_ = open_image_text(v, classes);
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    const data::LoaderBatch b = train_->next();
    Losses l = losses(b.tensors.at("image").to(device_));
    return {l.loss, {{"recon_l1", l.recon.item()}, {"kl", l.kl.item()}, {"skipped", double(b.skipped)}}};
  }

  train::StepOutput bench_step() override { return {losses(bench_images_).loss, {}}; }

  // On the first train.eval_samples held-out images, each encoded to its
  // posterior mean and decoded: val_recon_l1 (per pixel, normalised units as
  // the training recon_l1), val_kl (per image), val_loss (val_recon_l1 +
  // kl_weight * val_kl), psnr (dB, the mean over images, pixels mapped back
  // to [0, 1] and the reconstruction clamped there), and the mean and std of
  // every element of the posterior means (latent_mean, latent_std: latent
  // diffusion divides latents by latent_std, SD's scaling_factor = 1 / it).
  std::map<std::string, double> evaluate() override {
    std::map<std::string, double> out;
    if (!val_) return out;
    double l1 = 0, kl = 0, psnr = 0, z_sum = 0, z_sq = 0, pixels = 0, latents = 0;
    int64_t images = 0;
    for_each_batch(*val_, eval_transform_, B_, cfg_.get_int("train.eval_samples"), [&](const data::LoaderBatch& b) {
      const Tensor x = b.tensors.at("image").to(device_);
      const Posterior q = model_->encode(x);
      const Tensor mean = q.mean.to(DType::f32), rec = model_->decode(q.mean).to(DType::f32);
      l1 += sum(abs(rec - x)).item();
      kl += sum(Posterior{mean, q.logvar.to(DType::f32)}.kl()).item();
      const Tensor mse = mean_squared(to_unit(rec), to_unit(x));
      psnr += sum(log(clamp_min(mse, 1e-10)) * (-10.0 / std::log(10.0))).item();
      z_sum += sum(mean).item();
      z_sq += sum(square(mean)).item();
      pixels += double(x.numel());
      latents += double(mean.numel());
      images += x.size(0);
    });
    if (images == 0) return out;
    out["val_recon_l1"] = l1 / pixels;
    out["val_kl"] = kl / double(images);
    out["val_loss"] = out["val_recon_l1"] + kl_weight_ * out["val_kl"];
    out["psnr"] = psnr / double(images);
    const double m = z_sum / latents;
    out["latent_mean"] = m;
    out["latent_std"] = std::sqrt(std::max(0.0, z_sq / latents - m * m));
    return out;
  }

  // The first eval.samples held-out images (top row) above their
  // reconstructions from the posterior mean (bottom row).
  void write_samples(int64_t step, train::SampleSink& sink) override {
    if (!val_) return;
    const int64_t n = std::min(cfg_.get_int("eval.samples"), val_->size());
    if (n <= 0) return;
    Tensor originals;
    for_each_batch(*val_, eval_transform_, n, n, [&](const data::LoaderBatch& b) { originals = b.tensors.at("image"); });
    const Tensor x = originals.to(device_);
    const Tensor rec = model_->decode(model_->encode(x).mean).to(DType::f32);
    const Tensor grid = image_grid(cat({to_unit(x), to_unit(rec)}, 0), n);
    const image::Image img = image::from_tensor(grid);
    sink.image_png("reconstructions", image::encode_png(img), img.height, img.width);
  }

  int64_t batch_samples() const override { return B_; }
  std::string sample_unit() const override { return "img"; }
  double flops_per_sample() const override { return autoencoder_flops_per_image(model_->options); }

  train::TaskState state() const override {
    return {{{"train", train_ ? train_->position() : 0}}, {{"noise", noise_gen_.state()}}, {}};
  }
  void load_state(const train::TaskState& s) override {
    if (auto it = s.positions.find("train"); it != s.positions.end() && train_) train_->set_position(it->second);
    if (auto it = s.rngs.find("noise"); it != s.rngs.end()) noise_gen_.set_state(it->second);
  }

 private:
  struct Losses {
    Tensor loss, recon, kl;
  };

  // L1 between the images and the decoded posterior sample (per pixel), and
  // the KL to N(0, I) summed over each image's latent elements, averaged
  // over the batch (LDM's kl_loss). Both in f32 whatever the precision.
  Losses losses(const Tensor& x) {
    const Posterior q = model_->encode(x);
    const Tensor rec = model_->decode(model_->sample(q, &noise_gen_));
    const Tensor recon = l1_loss(rec.to(DType::f32), x.to(DType::f32));
    const Tensor kl = mean(Posterior{q.mean.to(DType::f32), q.logvar.to(DType::f32)}.kl());
    return {kl_weight_ > 0 ? recon + kl * kl_weight_ : recon, recon.detach(), kl.detach()};
  }

  // Normalised images back to [0, 1] (clamped, as they would be saved).
  Tensor to_unit(const Tensor& x) const { return clamp(x * pixel_std_ + pixel_mean_, 0.0, 1.0); }

  // Per image: the mean squared difference over its pixels, [B].
  static Tensor mean_squared(const Tensor& a, const Tensor& b) { return mean(square(a - b), {1, 2, 3}); }

  const train::Config& cfg_;
  Device device_;
  int64_t B_ = 0;
  double kl_weight_ = 0;
  Generator noise_gen_;
  std::unique_ptr<Autoencoder> model_;
  data::Transform train_transform_, eval_transform_;
  Tensor pixel_mean_, pixel_std_;
  std::optional<TrainImages> train_;
  std::shared_ptr<const data::ImageTextSource> val_;
  Tensor bench_images_;
};

const train::TaskRegistrar registrar{{
    "autoencoder",
    "KL autoencoder (as SD's AutoencoderKL, no attention): images to latents for latent diffusion, L1 + KL loss",
    declare_autoencoder_keys,
    {},
    {"model.image_size", "model.channels", "model.latent_channels", "model.base_channels", "model.channel_mult",
     "model.res_blocks", "model.groups"},
    [](const train::Config& c) { return std::make_unique<AutoencoderTask>(c); },
}};

}  // namespace

AutoencoderOptions autoencoder_options(const train::Config& c) {
  AutoencoderOptions o;
  o.image_size = c.get_int("model.image_size");
  o.channels = c.get_int("model.channels");
  o.latent_channels = c.get_int("model.latent_channels");
  o.base_channels = c.get_int("model.base_channels");
  o.channel_mult = parse_int_list("model.channel_mult", c.get_string("model.channel_mult"));
  o.res_blocks = c.get_int("model.res_blocks");
  o.groups = c.get_int("model.groups");
  return o;
}

std::unique_ptr<Autoencoder> load_autoencoder_run(const std::string& run_dir) {
  const train::Config c = train::load_run_config(run_dir);
  if (c.get_string("task.kind") != "autoencoder")
    error(run_dir, " is a '", c.get_string("task.kind"), "' run, not an autoencoder run");
  auto model = std::make_unique<Autoencoder>(autoencoder_options(c));
  train::load_run_weights(run_dir, *model);
  model->eval();
  return model;
}

}  // namespace fm::tasks

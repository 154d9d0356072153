#pragma once
// A KL autoencoder as Stable Diffusion's AutoencoderKL (Rombach et al. 2022,
// "High-Resolution Image Synthesis with Latent Diffusion Models"), small and
// without attention blocks, so latent diffusion can run on its latents.
//
// Encoder: conv_in (3x3) to base_channels; per level i a run of res_blocks
// ResNet blocks to base_channels * channel_mult[i], then a stride-2 3x3
// convolution (after padding right and bottom by one, as LDM) except at the
// last level; a middle ResNet block; GroupNorm, SiLU, conv_out (3x3) to
// 2 * latent_channels. quant_conv (1x1) turns that into the posterior's
// (mean, logvar). Decoder, mirrored: post_quant_conv (1x1), conv_in (3x3) to
// the deepest width, a middle ResNet block, then per level from the deepest
// res_blocks + 1 ResNet blocks (one more than the encoder, as SD's decoder)
// and, except at the shallowest, a nearest x2 upsample and a 3x3 convolution;
// GroupNorm, SiLU, conv_out (3x3) to the image channels.
// A ResNet block: GroupNorm, SiLU, conv3x3, GroupNorm, SiLU, conv3x3, added
// to the input (through a 1x1 convolution when the width changes).
// GroupNorms use eps 1e-6, as diffusers' AutoencoderKL.
//
// The parameter names map one to one onto diffusers' (down_blocks.i.resnets.j
// = down.i.blocks.j, conv_shortcut = skip, downsamplers.0.conv = downsample,
// mid_block.resnets.0 = mid, conv_norm_out = norm_out, up_blocks.i.resnets.j
// = up.i.blocks.j, upsamplers.0.conv = upsample; see
// tests/fixtures/make_autoencoder_fixtures.py).
#include <memory>
#include <vector>

#include "fm/nn/layers.h"
#include "fm/train/config.h"
#include "fm/random.h"

namespace fm::tasks {

struct AutoencoderOptions {
  int64_t image_size = 32, channels = 3;  // images [B, channels, image_size, image_size]
  int64_t latent_channels = 4;
  int64_t base_channels = 64;
  std::vector<int64_t> channel_mult = {1, 2};  // one level each: widths base * mult; 2^(levels - 1) = downsampling
  int64_t res_blocks = 1;                      // ResNet blocks per encoder level (the decoder has one more)
  int64_t groups = 32;                         // GroupNorm groups, lowered to the largest divisor of a width
};

// The number of GroupNorm groups for `channels`: the largest divisor of it
// that is at most `groups`.
int64_t autoencoder_groups(int64_t groups, int64_t channels);

// The diagonal Gaussian posterior q(z | x): [B, latent_channels, h, w] each.
struct Posterior {
  Tensor mean, logvar;  // logvar clamped to [-30, 20] (as diffusers)
  // KL(q || N(0, I)) per sample, summed over its latent elements: [B].
  Tensor kl() const;
};

class ResnetBlock : public nn::Module {
 public:
  ResnetBlock(int64_t in_channels, int64_t out_channels, int64_t groups);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::GroupNorm> norm1, norm2;
  std::shared_ptr<nn::Conv2d> conv1, conv2;
  std::shared_ptr<nn::Conv2d> skip;  // 1x1, only when the width changes
};

// One resolution of the encoder: its ResNet blocks, then the downsampling
// convolution (absent at the last level).
class EncoderLevel : public nn::Module {
 public:
  EncoderLevel(int64_t in_channels, int64_t out_channels, int64_t blocks, int64_t groups, bool downsample);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::ModuleList<ResnetBlock>> blocks;
  std::shared_ptr<nn::Conv2d> downsample;  // 3x3, stride 2, on the input padded right and bottom by one
};

// One resolution of the decoder: its ResNet blocks, then the upsampling
// convolution (absent at the shallowest level).
class DecoderLevel : public nn::Module {
 public:
  DecoderLevel(int64_t in_channels, int64_t out_channels, int64_t blocks, int64_t groups, bool upsample);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::ModuleList<ResnetBlock>> blocks;
  std::shared_ptr<nn::Conv2d> upsample;  // 3x3 after nearest x2
};

class AutoencoderEncoder : public nn::Module {
 public:
  explicit AutoencoderEncoder(const AutoencoderOptions& o);
  Tensor forward(const Tensor& x) const;  // [B, C, H, W] -> [B, 2 * latent_channels, h, w]
  std::shared_ptr<nn::Conv2d> conv_in;
  std::shared_ptr<nn::ModuleList<EncoderLevel>> down;  // down.i: level i, finest first
  std::shared_ptr<ResnetBlock> mid;
  std::shared_ptr<nn::GroupNorm> norm_out;
  std::shared_ptr<nn::Conv2d> conv_out;
};

class AutoencoderDecoder : public nn::Module {
 public:
  explicit AutoencoderDecoder(const AutoencoderOptions& o);
  Tensor forward(const Tensor& z) const;  // [B, latent_channels, h, w] -> [B, C, H, W]
  std::shared_ptr<nn::Conv2d> conv_in;
  std::shared_ptr<ResnetBlock> mid;
  std::shared_ptr<nn::ModuleList<DecoderLevel>> up;  // up.i: in the order they run, the deepest first
  std::shared_ptr<nn::GroupNorm> norm_out;
  std::shared_ptr<nn::Conv2d> conv_out;
};

class Autoencoder : public nn::Module {
 public:
  // Every convolution is initialised as PyTorch's default (kaiming-uniform
  // with a = sqrt(5): weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))),
  // drawn from init_gen (or the default generator); GroupNorms start at
  // weight 1, bias 0.
  explicit Autoencoder(const AutoencoderOptions& o, Generator* init_gen = nullptr);

  // x [B, channels, H, W] (normalised pixels, [-1, 1] in the usual setup;
  // H = W = image_size in training, any multiples of downsample_factor()
  // work: the model is fully convolutional) -> the posterior over
  // [B, latent_channels, H / f, W / f], f = downsample_factor().
  Posterior encode(const Tensor& x) const;
  // mean + exp(logvar / 2) * noise, noise drawn from gen (or the default generator).
  Tensor sample(const Posterior& posterior, Generator* gen = nullptr) const;
  // z [B, latent_channels, h, w] -> images [B, channels, h * f, w * f].
  Tensor decode(const Tensor& z) const;
  // 2^(levels - 1).
  int64_t downsample_factor() const;
  int64_t latent_size() const { return options.image_size / downsample_factor(); }

  AutoencoderOptions options;
  std::shared_ptr<AutoencoderEncoder> encoder;
  std::shared_ptr<nn::Conv2d> quant_conv;       // 1x1, 2 * latent -> 2 * latent
  std::shared_ptr<nn::Conv2d> post_quant_conv;  // 1x1, latent -> latent
  std::shared_ptr<AutoencoderDecoder> decoder;
};

// FLOPs of one image's forward + backward (3x the forward): 2 per
// multiply-add of every convolution (encode, decode and both 1x1 quant
// convolutions) at its output resolution. GroupNorm, SiLU, the upsampling,
// the skip additions and the loss (a few FLOPs per element, not products)
// are left out, as the other kinds leave out their element-wise work.
double autoencoder_flops_per_image(const AutoencoderOptions& o);

// The model options of an autoencoder run's config (model.* keys).
AutoencoderOptions autoencoder_options(const train::Config& c);
// A trained `autoencoder` run's newest checkpoint (EMA weights when kept),
// in eval mode: the frozen codec of latent diffusion. Errors name the run
// when it is another kind or has no checkpoint.
std::unique_ptr<Autoencoder> load_autoencoder_run(const std::string& run_dir);

}  // namespace fm::tasks

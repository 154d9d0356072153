#include "fm/tasks/autoencoder.h"

#include <algorithm>

#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

constexpr double kNormEps = 1e-6;  // diffusers' AutoencoderKL

std::shared_ptr<nn::Conv2d> make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1) {
  nn::Conv2dOptions o;
  o.in_channels = in;
  o.out_channels = out;
  o.kernel_size[0] = o.kernel_size[1] = kernel;
  o.args.stride[0] = o.args.stride[1] = stride;
  // 3x3 convolutions keep the size ("same" padding), except the downsampling
  // one, whose input is padded (right and bottom only) before it.
  o.args.padding[0] = o.args.padding[1] = stride == 1 ? kernel / 2 : 0;
  return std::make_shared<nn::Conv2d>(o);
}

std::shared_ptr<nn::GroupNorm> make_norm(int64_t groups, int64_t channels) {
  return std::make_shared<nn::GroupNorm>(
      nn::GroupNormOptions{autoencoder_groups(groups, channels), channels, kNormEps, true});
}

int64_t width(const AutoencoderOptions& o, size_t level) { return o.base_channels * o.channel_mult[level]; }

void check_options(const AutoencoderOptions& o) {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) error("Autoencoder: ", name, " must be positive, got ", v);
  };
  positive("image_size", o.image_size);
  positive("channels", o.channels);
  positive("latent_channels", o.latent_channels);
  positive("base_channels", o.base_channels);
  positive("res_blocks", o.res_blocks);
  positive("groups", o.groups);
  if (o.channel_mult.empty()) error("Autoencoder: channel_mult needs at least one level");
  for (int64_t m : o.channel_mult) positive("each channel_mult", m);
  if (o.channel_mult.size() > 16) error("Autoencoder: at most 16 levels, got ", o.channel_mult.size());
  const int64_t f = int64_t(1) << (o.channel_mult.size() - 1);
  if (o.image_size % f != 0)
    error("Autoencoder: image_size ", o.image_size, " is not a multiple of the downsampling factor ", f, " (",
          o.channel_mult.size(), " levels)");
}

double conv_flops(int64_t in, int64_t out, int64_t kernel, int64_t out_side) {
  return 2.0 * double(in) * double(out) * double(kernel * kernel) * double(out_side * out_side);
}

// A ResNet block's convolutions at side s.
double block_flops(int64_t in, int64_t out, int64_t s) {
  return conv_flops(in, out, 3, s) + conv_flops(out, out, 3, s) + (in != out ? conv_flops(in, out, 1, s) : 0.0);
}

}  // namespace

int64_t autoencoder_groups(int64_t groups, int64_t channels) {
  if (groups <= 0 || channels <= 0) error("Autoencoder: groups and channels must be positive, got ", groups, ", ", channels);
  int64_t g = std::min(groups, channels);
  while (channels % g != 0) --g;
  return g;
}

Tensor Posterior::kl() const {
  if (!mean.defined() || !logvar.defined() || mean.shape() != logvar.shape())
    error("Posterior::kl: mean and logvar must be defined and of one shape");
  Shape dims;
  for (int64_t d = 1; d < mean.dim(); ++d) dims.push_back(d);
  return sum(square(mean) + exp(logvar) - 1.0 - logvar, dims) * 0.5;
}

ResnetBlock::ResnetBlock(int64_t in, int64_t out, int64_t groups) {
  norm1 = register_module("norm1", make_norm(groups, in));
  conv1 = register_module("conv1", make_conv(in, out, 3));
  norm2 = register_module("norm2", make_norm(groups, out));
  conv2 = register_module("conv2", make_conv(out, out, 3));
  if (in != out) skip = register_module("skip", make_conv(in, out, 1));
}

Tensor ResnetBlock::forward(const Tensor& x) const {
  Tensor h = conv1->forward(silu(norm1->forward(x)));
  h = conv2->forward(silu(norm2->forward(h)));
  return (skip ? skip->forward(x) : x) + h;
}

EncoderLevel::EncoderLevel(int64_t in, int64_t out, int64_t n, int64_t groups, bool down) {
  blocks = register_module("blocks", std::make_shared<nn::ModuleList<ResnetBlock>>());
  for (int64_t j = 0; j < n; ++j) blocks->push_back(std::make_shared<ResnetBlock>(j == 0 ? in : out, out, groups));
  if (down) downsample = register_module("downsample", make_conv(out, out, 3, 2));
}

Tensor EncoderLevel::forward(const Tensor& x) const {
  Tensor h = x;
  for (const auto& b : *blocks) h = b->forward(h);
  // LDM's asymmetric padding: one zero column on the right, one row at the
  // bottom, then a 3x3 window every 2 pixels (H -> H / 2 for even H).
  if (downsample) h = downsample->forward(pad(h, {0, 1, 0, 1}));
  return h;
}

DecoderLevel::DecoderLevel(int64_t in, int64_t out, int64_t n, int64_t groups, bool up) {
  blocks = register_module("blocks", std::make_shared<nn::ModuleList<ResnetBlock>>());
  for (int64_t j = 0; j < n; ++j) blocks->push_back(std::make_shared<ResnetBlock>(j == 0 ? in : out, out, groups));
  if (up) upsample = register_module("upsample", make_conv(out, out, 3));
}

Tensor DecoderLevel::forward(const Tensor& x) const {
  Tensor h = x;
  for (const auto& b : *blocks) h = b->forward(h);
  if (upsample) h = upsample->forward(fm::upsample(h, 2 * h.size(2), 2 * h.size(3), "nearest"));
  return h;
}

AutoencoderEncoder::AutoencoderEncoder(const AutoencoderOptions& o) {
  const size_t levels = o.channel_mult.size();
  conv_in = register_module("conv_in", make_conv(o.channels, o.base_channels, 3));
  down = register_module("down", std::make_shared<nn::ModuleList<EncoderLevel>>());
  int64_t ch = o.base_channels;
  for (size_t i = 0; i < levels; ++i) {
    down->push_back(std::make_shared<EncoderLevel>(ch, width(o, i), o.res_blocks, o.groups, i + 1 < levels));
    ch = width(o, i);
  }
  mid = register_module("mid", std::make_shared<ResnetBlock>(ch, ch, o.groups));
  norm_out = register_module("norm_out", make_norm(o.groups, ch));
  conv_out = register_module("conv_out", make_conv(ch, 2 * o.latent_channels, 3));
}

Tensor AutoencoderEncoder::forward(const Tensor& x) const {
  Tensor h = conv_in->forward(x);
  for (const auto& level : *down) h = level->forward(h);
  return conv_out->forward(silu(norm_out->forward(mid->forward(h))));
}

AutoencoderDecoder::AutoencoderDecoder(const AutoencoderOptions& o) {
  const size_t levels = o.channel_mult.size();
  int64_t ch = width(o, levels - 1);
  conv_in = register_module("conv_in", make_conv(o.latent_channels, ch, 3));
  mid = register_module("mid", std::make_shared<ResnetBlock>(ch, ch, o.groups));
  up = register_module("up", std::make_shared<nn::ModuleList<DecoderLevel>>());
  for (size_t k = 0; k < levels; ++k) {
    const size_t i = levels - 1 - k;  // the encoder's level this one mirrors
    up->push_back(std::make_shared<DecoderLevel>(ch, width(o, i), o.res_blocks + 1, o.groups, i > 0));
    ch = width(o, i);
  }
  norm_out = register_module("norm_out", make_norm(o.groups, ch));
  conv_out = register_module("conv_out", make_conv(ch, o.channels, 3));
}

Tensor AutoencoderDecoder::forward(const Tensor& z) const {
  Tensor h = mid->forward(conv_in->forward(z));
  for (const auto& level : *up) h = level->forward(h);
  return conv_out->forward(silu(norm_out->forward(h)));
}

Autoencoder::Autoencoder(const AutoencoderOptions& o, Generator* gen) : options(o) {
  check_options(o);
  encoder = register_module("encoder", std::make_shared<AutoencoderEncoder>(o));
  quant_conv = register_module("quant_conv", make_conv(2 * o.latent_channels, 2 * o.latent_channels, 1));
  post_quant_conv = register_module("post_quant_conv", make_conv(o.latent_channels, o.latent_channels, 1));
  decoder = register_module("decoder", std::make_shared<AutoencoderDecoder>(o));
  // The convolutions drew their PyTorch-default values from the default
  // generator as they were made; redraw them all, in registration order,
  // from init_gen so a model is reproducible from its own seed.
  const nn::StateDict params = [&] {
    nn::StateDict m;
    for (const auto& p : named_parameters()) m[p.name] = p.tensor;
    return m;
  }();
  for (const auto& p : named_parameters()) {
    if (p.tensor.dim() != 4) continue;  // a convolution's weight, then its bias
    const int64_t fan = nn::init::fan_in(p.tensor);
    nn::init::default_uniform_(p.tensor, fan, gen);
    const std::string bias = p.name.substr(0, p.name.size() - 6) + "bias";  // "...weight" -> "...bias"
    if (auto it = params.find(bias); it != params.end()) nn::init::default_uniform_(it->second, fan, gen);
  }
}

int64_t Autoencoder::downsample_factor() const { return int64_t(1) << (options.channel_mult.size() - 1); }

Posterior Autoencoder::encode(const Tensor& x) const {
  const AutoencoderOptions& o = options;
  if (x.dim() != 4 || x.size(1) != o.channels || x.size(2) % downsample_factor() != 0 ||
      x.size(3) % downsample_factor() != 0)
    error("Autoencoder::encode: x must be [B, ", o.channels, ", H, W] with H and W multiples of ",
          downsample_factor(), ", got ", x.shape());
  std::vector<Tensor> moments = chunk(quant_conv->forward(encoder->forward(x)), 2, 1);
  return {moments[0], clamp(moments[1], -30.0, 20.0)};
}

Tensor Autoencoder::sample(const Posterior& q, Generator* gen) const {
  if (!q.mean.defined() || !q.logvar.defined() || q.mean.shape() != q.logvar.shape())
    error("Autoencoder::sample: the posterior's mean and logvar must be defined and of one shape");
  // f32 noise whatever the compute dtype, so a run draws the same numbers
  // in any precision.
  const Tensor noise = randn(q.mean.shape(), TensorOptions(DType::f32).device(q.mean.device()), gen);
  return q.mean + exp(q.logvar * 0.5) * noise;
}

Tensor Autoencoder::decode(const Tensor& z) const {
  if (z.dim() != 4 || z.size(1) != options.latent_channels)
    error("Autoencoder::decode: z must be [B, ", options.latent_channels, ", h, w], got ", z.shape());
  return decoder->forward(post_quant_conv->forward(z));
}

double autoencoder_flops_per_image(const AutoencoderOptions& o) {
  check_options(o);
  const size_t levels = o.channel_mult.size();
  const int64_t lc = o.latent_channels, s0 = o.image_size, sl = s0 >> (levels - 1);
  double f = conv_flops(o.channels, o.base_channels, 3, s0);  // encoder
  int64_t ch = o.base_channels;
  for (size_t i = 0; i < levels; ++i) {
    const int64_t s = s0 >> i;
    for (int64_t j = 0; j < o.res_blocks; ++j) f += block_flops(j == 0 ? ch : width(o, i), width(o, i), s);
    ch = width(o, i);
    if (i + 1 < levels) f += conv_flops(ch, ch, 3, s / 2);
  }
  f += block_flops(ch, ch, sl) + conv_flops(ch, 2 * lc, 3, sl);
  f += conv_flops(2 * lc, 2 * lc, 1, sl) + conv_flops(lc, lc, 1, sl);  // quant_conv, post_quant_conv
  f += conv_flops(lc, ch, 3, sl) + block_flops(ch, ch, sl);            // decoder
  for (size_t k = 0; k < levels; ++k) {
    const size_t i = levels - 1 - k;
    const int64_t s = sl << k;
    for (int64_t j = 0; j <= o.res_blocks; ++j) f += block_flops(j == 0 ? ch : width(o, i), width(o, i), s);
    ch = width(o, i);
    if (i > 0) f += conv_flops(ch, ch, 3, 2 * s);
  }
  f += conv_flops(ch, o.channels, 3, s0);
  return 3.0 * f;
}

}  // namespace fm::tasks

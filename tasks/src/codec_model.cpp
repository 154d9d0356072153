#include "fm/tasks/codec_model.h"

#include <cmath>
#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

constexpr int64_t kOuterKernel = 7;     // conv_in and conv_out of both halves (SEANet's kernel_size, last_kernel_size)
constexpr int64_t kResidualKernel = 3;  // the dilated convolution of a residual unit
constexpr int64_t kCompress = 2;        // a residual unit's hidden width is channels / 2

// ceil(a / b) for b > 0 and any sign of a.
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

void check_options(const CodecOptions& o) {
  auto positive = [](const char* name, int64_t v) {
    if (v <= 0) error("Codec: ", name, " must be positive, got ", v);
  };
  positive("sample_rate", o.sample_rate);
  positive("dim", o.dim);
  positive("residual_layers", o.residual_layers);
  positive("dilation_base", o.dilation_base);
  if (o.channels < kCompress) error("Codec: channels must be at least ", kCompress, ", got ", o.channels);
  if (o.ratios.empty()) error("Codec: ratios needs at least one stride");
  if (o.ratios.size() > 16) error("Codec: at most 16 ratios, got ", o.ratios.size());
  for (int64_t r : o.ratios) positive("each ratio", r);
}

int64_t dilation_of(int64_t base, int64_t j) {
  int64_t d = 1;
  for (int64_t i = 0; i < j; ++i) d *= base;
  return d;
}

int64_t deepest_width(const CodecOptions& o) { return o.channels << o.ratios.size(); }

}  // namespace

Tensor elu(const Tensor& x) {
  Tensor y;
  {
    NoGradGuard no_grad;
    y = maximum(x, exp(clamp_max(x, 0.0)) - 1.0);  // exp(x) - 1 >= x, equal at 0
  }
  // One node instead of the composition's five: d elu / dx is 1 above zero
  // and exp(x) = y + 1 below, that is min(y, 0) + 1, read from the output.
  if (any_requires_grad({x})) {
    const Tensor out = y.detach();
    record("elu", y, {x}, [out](const Tensor& g, const Node&) { return std::vector<Tensor>{g * (clamp_max(out, 0.0) + 1.0)}; });
  }
  return y;
}

// ---- convolutions

CodecConvParams::CodecConvParams(int64_t d0, int64_t d1, int64_t kernel, int64_t out, double fan_in, bool weight_norm,
                                 Generator* gen) {
  if (d0 <= 0 || d1 <= 0 || kernel <= 0) error("Codec: a convolution needs positive sizes, got ", d0, ", ", d1, ", ", kernel);
  Tensor w = empty({d0, d1, kernel});
  const double bound = std::sqrt(3.0 / fan_in);  // variance 1 / fan_in
  nn::init::uniform_(w, -bound, bound, gen);
  const Tensor b = zeros({out});
  if (weight_norm) {
    weight_g = register_parameter("weight_g", sqrt(sum(square(w), {1, 2}, true)), nn::kNoDecay);
    weight_v = register_parameter("weight_v", w);
  } else {
    weight = register_parameter("weight", w);
  }
  bias = register_parameter("bias", b, nn::kNoDecay);
}

Tensor CodecConvParams::effective_weight() const {
  return weight.defined() ? weight : weight_v * (weight_g * rsqrt(sum(square(weight_v), {1, 2}, true)));
}

CodecConv1d::CodecConv1d(int64_t in_, int64_t out_, int64_t kernel_, int64_t stride_, int64_t dilation_,
                         bool weight_norm, Generator* gen)
    : CodecConvParams(out_, in_, kernel_, out_, double(in_ * kernel_), weight_norm, gen),
      in(in_), out(out_), kernel(kernel_), stride(stride_), dilation(dilation_) {
  if (stride <= 0 || dilation <= 0) error("CodecConv1d: stride and dilation must be positive, got ", stride, ", ", dilation);
}

Tensor CodecConv1d::forward(const Tensor& x) const {
  if (x.dim() != 3 || x.size(1) != in) error("CodecConv1d: expects [B, ", in, ", T], got ", x.shape());
  const int64_t length = x.size(2), span = (kernel - 1) * dilation + 1;
  const int64_t total = (kernel - 1) * dilation - (stride - 1);
  // audiocraft's get_extra_padding_for_conv1d: zeros that complete the last window.
  const int64_t frames = ceil_div(length - span + total, stride) + 1;
  const int64_t extra = (frames - 1) * stride + (span - total) - length;
  const int64_t right = total / 2, left = total - right;
  Conv1dArgs args;
  args.stride = stride;
  args.dilation = dilation;
  if (left == right + extra) {  // symmetric: the convolution pads, without a padded copy
    args.padding = left;
    return conv1d(x, effective_weight(), bias, args);
  }
  return conv1d(pad(x, {left, right + extra}), effective_weight(), bias, args);
}

CodecConvTranspose1d::CodecConvTranspose1d(int64_t in_, int64_t out_, int64_t kernel_, int64_t stride_,
                                           bool weight_norm, Generator* gen)
    : CodecConvParams(in_, out_, kernel_, out_, double(in_ * kernel_) / double(std::max<int64_t>(stride_, 1)),
                      weight_norm, gen),
      in(in_), out(out_), kernel(kernel_), stride(stride_) {
  if (stride <= 0 || kernel < stride)
    error("CodecConvTranspose1d: needs 0 < stride <= kernel, got stride ", stride, " and kernel ", kernel);
}

Tensor CodecConvTranspose1d::forward(const Tensor& x) const {
  if (x.dim() != 3 || x.size(1) != in) error("CodecConvTranspose1d: expects [B, ", in, ", T], got ", x.shape());
  Conv1dArgs args;
  args.stride = stride;
  const Tensor y = conv_transpose1d(x, effective_weight(), bias, args);  // (T - 1) * stride + kernel samples
  const int64_t total = kernel - stride, right = total / 2, left = total - right;
  return y.narrow(2, left, y.size(2) - total);
}

// ---- blocks

ResidualUnit::ResidualUnit(int64_t channels, int64_t dilation, bool weight_norm, Generator* gen) {
  const int64_t hidden = channels / kCompress;
  conv1 = register_module("conv1",
                          std::make_shared<CodecConv1d>(channels, hidden, kResidualKernel, 1, dilation, weight_norm, gen));
  conv2 = register_module("conv2", std::make_shared<CodecConv1d>(hidden, channels, 1, 1, 1, weight_norm, gen));
}

Tensor ResidualUnit::forward(const Tensor& x) const { return x + conv2->forward(elu(conv1->forward(elu(x)))); }

EncoderStage::EncoderStage(int64_t channels, int64_t stride, const CodecOptions& o, Generator* gen) {
  units = register_module("units", std::make_shared<nn::ModuleList<ResidualUnit>>());
  for (int64_t j = 0; j < o.residual_layers; ++j)
    units->push_back(std::make_shared<ResidualUnit>(channels, dilation_of(o.dilation_base, j), o.weight_norm, gen));
  down = register_module(
      "down", std::make_shared<CodecConv1d>(channels, 2 * channels, 2 * stride, stride, 1, o.weight_norm, gen));
}

Tensor EncoderStage::forward(const Tensor& x) const {
  Tensor h = x;
  for (const auto& u : *units) h = u->forward(h);
  return down->forward(elu(h));
}

DecoderStage::DecoderStage(int64_t channels, int64_t stride, const CodecOptions& o, Generator* gen) {
  up = register_module(
      "up", std::make_shared<CodecConvTranspose1d>(channels, channels / 2, 2 * stride, stride, o.weight_norm, gen));
  units = register_module("units", std::make_shared<nn::ModuleList<ResidualUnit>>());
  for (int64_t j = 0; j < o.residual_layers; ++j)
    units->push_back(std::make_shared<ResidualUnit>(channels / 2, dilation_of(o.dilation_base, j), o.weight_norm, gen));
}

Tensor DecoderStage::forward(const Tensor& x) const {
  Tensor h = up->forward(elu(x));
  for (const auto& u : *units) h = u->forward(h);
  return h;
}

CodecEncoder::CodecEncoder(const CodecOptions& o, Generator* gen) {
  conv_in = register_module("conv_in", std::make_shared<CodecConv1d>(1, o.channels, kOuterKernel, 1, 1, o.weight_norm, gen));
  stages = register_module("stages", std::make_shared<nn::ModuleList<EncoderStage>>());
  int64_t ch = o.channels;
  for (int64_t r : o.ratios) {
    stages->push_back(std::make_shared<EncoderStage>(ch, r, o, gen));
    ch *= 2;
  }
  conv_out = register_module("conv_out", std::make_shared<CodecConv1d>(ch, o.dim, kOuterKernel, 1, 1, o.weight_norm, gen));
}

Tensor CodecEncoder::forward(const Tensor& wave) const {
  Tensor h = conv_in->forward(wave);
  for (const auto& s : *stages) h = s->forward(h);
  return conv_out->forward(elu(h));
}

CodecDecoder::CodecDecoder(const CodecOptions& o, Generator* gen) {
  int64_t ch = deepest_width(o);
  conv_in = register_module("conv_in", std::make_shared<CodecConv1d>(o.dim, ch, kOuterKernel, 1, 1, o.weight_norm, gen));
  stages = register_module("stages", std::make_shared<nn::ModuleList<DecoderStage>>());
  for (auto it = o.ratios.rbegin(); it != o.ratios.rend(); ++it) {
    stages->push_back(std::make_shared<DecoderStage>(ch, *it, o, gen));
    ch /= 2;
  }
  conv_out = register_module("conv_out", std::make_shared<CodecConv1d>(ch, 1, kOuterKernel, 1, 1, o.weight_norm, gen));
}

Tensor CodecDecoder::forward(const Tensor& frames) const {
  Tensor h = conv_in->forward(frames);
  for (const auto& s : *stages) h = s->forward(h);
  return conv_out->forward(elu(h));
}

// ---- the codec

namespace {
audio::RVQOptions rvq_options(const CodecOptions& o) {
  audio::RVQOptions r = o.rvq;
  r.dim = o.dim;
  return r;
}
}  // namespace

Codec::Codec(const CodecOptions& o, Generator* init_gen, Generator* rvq_gen) : options(o) {
  check_options(o);
  options.rvq.dim = o.dim;
  encoder = register_module("encoder", std::make_shared<CodecEncoder>(o, init_gen));
  quantizer = register_module("quantizer", std::make_shared<audio::ResidualVQ>(rvq_options(o), rvq_gen));
  decoder = register_module("decoder", std::make_shared<CodecDecoder>(o, init_gen));
}

int64_t Codec::hop() const {
  int64_t h = 1;
  for (int64_t r : options.ratios) h *= r;
  return h;
}

void Codec::check_wave(const Tensor& wave, const char* op) const {
  if (wave.dim() != 3 || wave.size(1) != 1 || wave.size(0) == 0 || wave.size(2) == 0)
    error(op, ": expects mono waveforms [B, 1, T] with B, T > 0, got ", wave.shape());
}

CodecOutput Codec::forward(const Tensor& wave) {
  check_wave(wave, "Codec::forward");
  const audio::RVQOutput q = quantizer->forward(encoder->forward(wave));
  const Tensor y = decoder->forward(q.quantized);
  return {y.narrow(2, 0, wave.size(2)), q.codes, q.commitment_loss};
}

Tensor Codec::encode(const Tensor& wave) const {
  check_wave(wave, "Codec::encode");
  NoGradGuard no_grad;
  return quantizer->encode(encoder->forward(wave));
}

Tensor Codec::decode(const Tensor& codes) const {
  // The first K codebooks of a residual quantiser are a coarser code of the
  // same frames (EnCodec's lower bandwidths), so any K up to the model's decodes.
  if (codes.dim() != 3 || codes.size(1) < 1 || codes.size(1) > n_codebooks() || codes.size(0) == 0 ||
      codes.size(2) == 0)
    error("Codec::decode: expects codes [B, K, F] with 1 <= K <= ", n_codebooks(), " and B, F > 0, got ",
          codes.shape());
  if (codes.dtype() != DType::i64 && codes.dtype() != DType::i32)
    error("Codec::decode: codes must be integers (i64 or i32), got ", codes.dtype());
  NoGradGuard no_grad;
  const Tensor c = codes.to(DType::i64);
  const int64_t lo = min(c).item<int64_t>(), hi = max(c).item<int64_t>();
  if (lo < 0 || hi >= codebook_size())
    error("Codec::decode: codes must be in [0, ", codebook_size(), "), got values in [", lo, ", ", hi, "]");
  return decoder->forward(quantizer->decode(c));
}

double codec_flops(const CodecOptions& o, int64_t samples) {
  // 2 x in x out x kernel per output position.
  auto conv = [](int64_t in, int64_t out, int64_t kernel, int64_t positions) {
    return 2.0 * double(in) * double(out) * double(kernel) * double(positions);
  };
  auto units = [&](int64_t ch, int64_t positions) {
    return double(o.residual_layers) *
           (conv(ch, ch / kCompress, kResidualKernel, positions) + conv(ch / kCompress, ch, 1, positions));
  };
  double f = 0;
  int64_t length = samples, ch = o.channels;
  f += conv(1, ch, kOuterKernel, length);
  for (int64_t r : o.ratios) {
    f += units(ch, length);
    length = ceil_div(length, r);
    f += conv(ch, 2 * ch, 2 * r, length);
    ch *= 2;
  }
  f += conv(ch, o.dim, kOuterKernel, length);  // the encoder's conv_out
  f += conv(o.dim, ch, kOuterKernel, length);  // the decoder's conv_in
  for (size_t i = o.ratios.size(); i-- > 0;) {
    // A transposed convolution: every input position meets every kernel tap.
    f += conv(ch, ch / 2, 2 * o.ratios[i], length);
    length *= o.ratios[i];
    ch /= 2;
    f += units(ch, length);
  }
  f += conv(ch, 1, kOuterKernel, length);
  return 3.0 * f;
}

}  // namespace fm::tasks

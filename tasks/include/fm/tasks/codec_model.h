#pragma once
// A neural audio codec in the style of EnCodec (Défossez et al. 2022, "High
// Fidelity Neural Audio Compression") as audiocraft builds it: a SEANet
// convolutional encoder, residual vector quantisation of its frames
// (fm/audio/rvq.h: EMA codebooks, k-means initialisation, dead-code restarts,
// commitment loss, straight-through gradients) and a mirrored decoder.
// Without the LSTM and without the adversarial losses.
//
// Encoder, on waveforms [B, 1, T]: conv_in (k7) to `channels`; per stride s
// of `ratios` (in encoder order, e.g. 2,4,5,8: hop 320, 50 frames/s at
// 16 kHz) `residual_layers` residual units, then ELU and a strided
// convolution (k = 2s, stride s) that doubles the width; ELU, conv_out (k7)
// to `dim`. Decoder, mirrored: conv_in (k7) from `dim` to the deepest width;
// per stride in reverse order ELU, a transposed convolution (k = 2s, stride
// s) that halves the width, its residual units; ELU, conv_out (k7) to one
// channel. A residual unit (SEANetResnetBlock with true_skip): x + conv2(ELU(
// conv1(ELU(x)))), conv1 k3 with dilation dilation_base^j to width / 2, conv2
// k1 back.
//
// Padding as audiocraft's non-causal StreamableConv1d with pad_mode
// "constant": a convolution of kernel k, stride s and dilation d pads
// (k - 1) * d - (s - 1) zeros, the larger half on the left, plus zeros on the
// right to complete its last window; a transposed one trims k - s samples,
// the larger half on the left. So a clip of T samples gives ceil(T / hop)
// frames, and frames decode to frames * hop samples: exactly T when the hop
// divides T (forward() trims the rest).
//
// Weight normalisation (audiocraft's default norm): each convolution's
// weight is weight_g * weight_v / |weight_v|, the norm over all dims but the
// first (torch.nn.utils.weight_norm, dim 0, also for the transposed
// convolutions, whose first dim is the input channels). Parameter names are
// the model's paths with those of the reference in
// tests/fixtures/make_codec_fixtures.py.
#include <memory>
#include <vector>

#include "fm/audio/rvq.h"
#include "fm/nn/module.h"
#include "fm/random.h"

namespace fm::tasks {

struct CodecOptions {
  int64_t sample_rate = 16000;
  int64_t channels = 32;                       // width after conv_in (SEANet's n_filters)
  int64_t dim = 128;                           // channels of the frames the RVQ quantises
  std::vector<int64_t> ratios = {2, 4, 5, 8};  // encoder strides, first to last; hop = their product
  int64_t residual_layers = 1;                 // residual units per stride
  int64_t dilation_base = 2;                   // unit j's k3 convolution has dilation dilation_base^j
  bool weight_norm = true;
  // The quantiser; its dim is set to `dim`.
  audio::RVQOptions rvq;
};

// ELU with alpha 1: x for x > 0, exp(x) - 1 otherwise (libfm has no ELU op:
// composed from relu, clamp_max and exp, with one backward node of its own).
Tensor elu(const Tensor& x);

// The parameters of a convolution: weight [d0, d1, kernel] (d0 = out for a
// convolution, in for a transposed one) or, with weight normalisation,
// weight_g [d0, 1, 1] (no_decay) and weight_v [d0, d1, kernel]; bias [out]
// (no_decay). The weight starts U(+-sqrt(3 / fan_in)), variance 1 / fan_in
// with fan_in the inputs that reach one output (in * kernel; in * kernel /
// stride for a transposed convolution), so the signal keeps its scale
// through the stack (PyTorch's default, variance 1 / (3 fan_in), shrinks it
// about 30x across the encoder and again across the decoder, and its random
// biases then drown it: the latents start nearly constant); weight_g =
// |weight_v|; biases start at 0. Drawn from gen (the default generator when null).
class CodecConvParams : public nn::Module {
 public:
  Tensor effective_weight() const;  // weight, or weight_g * weight_v / |weight_v|
  Tensor weight_g, weight_v, weight, bias;

 protected:
  CodecConvParams(int64_t d0, int64_t d1, int64_t kernel, int64_t out, double fan_in, bool weight_norm, Generator* gen);
};

// A 1-D convolution with audiocraft's non-causal padding (above).
class CodecConv1d : public CodecConvParams {
 public:
  CodecConv1d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t dilation, bool weight_norm,
              Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // [B, in, T] -> [B, out, ceil(T / stride)]
  int64_t in, out, kernel, stride, dilation;
};

// A transposed 1-D convolution with kernel - stride output samples trimmed.
class CodecConvTranspose1d : public CodecConvParams {
 public:
  CodecConvTranspose1d(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool weight_norm,
                       Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;  // [B, in, T] -> [B, out, T * stride]
  int64_t in, out, kernel, stride;
};

class ResidualUnit : public nn::Module {
 public:
  ResidualUnit(int64_t channels, int64_t dilation, bool weight_norm, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<CodecConv1d> conv1;  // k3, dilated, channels -> channels / 2
  std::shared_ptr<CodecConv1d> conv2;  // k1, back to channels
};

// One stride of the encoder: residual units, then ELU and the strided convolution.
class EncoderStage : public nn::Module {
 public:
  EncoderStage(int64_t channels, int64_t stride, const CodecOptions& o, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<nn::ModuleList<ResidualUnit>> units;
  std::shared_ptr<CodecConv1d> down;  // channels -> 2 * channels
};

// One stride of the decoder: ELU and the transposed convolution, then residual units.
class DecoderStage : public nn::Module {
 public:
  DecoderStage(int64_t channels, int64_t stride, const CodecOptions& o, Generator* gen = nullptr);
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<CodecConvTranspose1d> up;  // channels -> channels / 2
  std::shared_ptr<nn::ModuleList<ResidualUnit>> units;
};

class CodecEncoder : public nn::Module {
 public:
  explicit CodecEncoder(const CodecOptions& o, Generator* gen = nullptr);
  Tensor forward(const Tensor& wave) const;  // [B, 1, T] -> [B, dim, ceil(T / hop)]
  std::shared_ptr<CodecConv1d> conv_in;
  std::shared_ptr<nn::ModuleList<EncoderStage>> stages;
  std::shared_ptr<CodecConv1d> conv_out;
};

class CodecDecoder : public nn::Module {
 public:
  explicit CodecDecoder(const CodecOptions& o, Generator* gen = nullptr);
  Tensor forward(const Tensor& frames) const;  // [B, dim, F] -> [B, 1, F * hop]
  std::shared_ptr<CodecConv1d> conv_in;
  std::shared_ptr<nn::ModuleList<DecoderStage>> stages;
  std::shared_ptr<CodecConv1d> conv_out;
};

struct CodecOutput {
  Tensor reconstruction;   // [B, 1, T]
  Tensor codes;            // [B, K, F] i64
  Tensor commitment_loss;  // scalar: the RVQ's mean over codebooks (0 in eval mode)
};

class Codec : public nn::Module {
 public:
  // Convolutions start as CodecConvParams says, drawn from init_gen (or the
  // default generator) in registration order. rvq_gen draws the codebooks'
  // k-means starts and dead-code restarts (default generator when null); it
  // must outlive the model.
  explicit Codec(const CodecOptions& o, Generator* init_gen = nullptr, Generator* rvq_gen = nullptr);

  // Training (and evaluation with the quantiser): encode, quantise (in
  // training mode the codebooks learn, the gradient passes straight through),
  // decode, trimmed to T. wave [B, 1, T] with T > 0.
  CodecOutput forward(const Tensor& wave);
  // wave [B, 1, T] -> codes [B, n_codebooks, ceil(T / hop)] i64; never updates the codebooks.
  Tensor encode(const Tensor& wave) const;
  // codes [B, K, F] (1 <= K <= n_codebooks: the first K, integers in [0, codebook_size)) -> wave [B, 1, F * hop].
  Tensor decode(const Tensor& codes) const;

  int64_t hop() const;  // samples per frame: the product of the ratios
  double frame_rate() const { return double(options.sample_rate) / double(hop()); }
  int64_t n_codebooks() const { return options.rvq.n_codebooks; }
  int64_t codebook_size() const { return options.rvq.codebook_size; }

  CodecOptions options;
  std::shared_ptr<CodecEncoder> encoder;
  std::shared_ptr<audio::ResidualVQ> quantizer;
  std::shared_ptr<CodecDecoder> decoder;

 private:
  void check_wave(const Tensor& wave, const char* op) const;
};

// Forward + backward FLOPs (3x the forward) of one clip of `samples`
// samples: 2 per multiply-add of every convolution at its output length.
// The RVQ's distances, the ELUs and the losses are left out.
double codec_flops(const CodecOptions& o, int64_t samples);

}  // namespace fm::tasks

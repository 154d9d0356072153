// STFT, mel features and Griffin-Lim over fm::rfft / fm::irfft. Framing is an
// index_select of the padded signal and overlap-add a scatter_add, so autograd
// and every backend come for free.
#include "fm/audio/spectral.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"

namespace fm::audio {
namespace {

struct Framing {
  int64_t n_fft, hop, win;
  Tensor window;  // [n_fft] on the signal's device, the zero-padded analysis window
};

Framing framing_of(const char* op, const StftOptions& o, Device device) {
  Framing f{o.n_fft, o.hop_length > 0 ? o.hop_length : o.n_fft / 4, o.win_length > 0 ? o.win_length : o.n_fft, {}};
  if (f.n_fft < 1) error(op, ": n_fft must be positive, got ", f.n_fft);
  if (f.hop < 1) error(op, ": hop_length ", o.hop_length, " gives no hop for n_fft ", f.n_fft);
  if (f.win > f.n_fft) error(op, ": win_length ", f.win, " exceeds n_fft ", f.n_fft);
  Tensor w = o.window.defined() ? o.window : hann_window(f.win, true, device);
  if (w.dim() != 1 || w.size(0) != f.win)
    error(op, ": window must be [win_length] = [", f.win, "], got ", w.shape());
  w = w.to(DType::f32).to(device);
  const int64_t left = (f.n_fft - f.win) / 2;
  f.window = left > 0 || f.win < f.n_fft ? pad(w, {left, f.n_fft - f.win - left}) : w;
  return f;
}

// Sample index of each (frame, tap): frame t covers [t hop, t hop + n_fft).
Tensor frame_index(int64_t frames, int64_t n_fft, int64_t hop, Device device) {
  std::vector<int64_t> idx(size_t(frames * n_fft));
  for (int64_t t = 0; t < frames; ++t)
    for (int64_t j = 0; j < n_fft; ++j) idx[size_t(t * n_fft + j)] = t * hop + j;
  return tensor(idx, {frames * n_fft}).to(device);
}

Shape with_tail(const Tensor& x, int keep_from_end, std::initializer_list<int64_t> tail) {
  Shape s;
  for (int d = 0; d < x.dim() - keep_from_end; ++d) s.push_back(x.size(d));
  for (int64_t v : tail) s.push_back(v);
  return s;
}

// Mel <-> Hz (librosa's and torchaudio's formulas).
double hz_to_mel(double f, MelScale scale) {
  if (scale == MelScale::htk) return 2595.0 * std::log10(1.0 + f / 700.0);
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return f < min_log_hz ? f / f_sp : min_log_mel + std::log(f / min_log_hz) / logstep;
}
double mel_to_hz(double m, MelScale scale) {
  if (scale == MelScale::htk) return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0);
  const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
  const double logstep = std::log(6.4) / 27.0;
  return m < min_log_mel ? f_sp * m : min_log_hz * std::exp(logstep * (m - min_log_mel));
}

}  // namespace

Tensor hann_window(int64_t length, bool periodic, Device device) {
  if (length < 1) error("hann_window: length must be positive, got ", length);
  std::vector<float> w(static_cast<size_t>(length));
  const double denom = periodic ? double(length) : double(length - 1);
  for (int64_t i = 0; i < length; ++i)
    w[size_t(i)] = length == 1 ? 1.0f : float(0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * double(i) / denom));
  return tensor(w, {length}).to(device);
}

Tensor stft(const Tensor& x, const StftOptions& o) {
  if (!x.defined() || x.dim() < 1) error("stft: input must be [..., T]");
  const Framing f = framing_of("stft", o, x.device());
  const int64_t T = x.size(-1);
  Tensor flat = x.reshape({-1, T});
  if (o.center) {
    if (o.pad_mode == "reflect" && T <= f.n_fft / 2)
      error("stft: reflect padding needs more than n_fft / 2 = ", f.n_fft / 2, " samples, got ", T);
    if (o.pad_mode != "reflect" && o.pad_mode != "constant")
      error("stft: pad_mode must be 'reflect' or 'constant', got '", o.pad_mode, "'");
    flat = pad(flat, {f.n_fft / 2, f.n_fft / 2}, o.pad_mode);
  }
  const int64_t padded = flat.size(1);
  if (padded < f.n_fft) error("stft: ", T, " samples are fewer than n_fft ", f.n_fft);
  const int64_t frames = 1 + (padded - f.n_fft) / f.hop;
  Tensor framed = index_select(flat, 1, frame_index(frames, f.n_fft, f.hop, x.device()))
                      .view({flat.size(0), frames, f.n_fft});
  Tensor spec = rfft(framed * f.window.to(framed.dtype()));  // [M, frames, bins, 2]
  return spec.transpose(1, 2).reshape(with_tail(x, 1, {f.n_fft / 2 + 1, frames, 2}));
}

Tensor istft(const Tensor& X, const StftOptions& o, int64_t length) {
  if (!X.defined() || X.dim() < 3 || X.size(-1) != 2)
    error("istft: input must be [..., bins, frames, 2], got ", X.defined() ? X.shape() : Shape{});
  const Framing f = framing_of("istft", o, X.device());
  const int64_t bins = X.size(-3), frames = X.size(-2);
  if (bins != f.n_fft / 2 + 1) error("istft: ", bins, " bins do not match n_fft ", f.n_fft);
  if (frames < 1) error("istft: no frames");
  Tensor spec = X.reshape({-1, bins, frames, 2}).transpose(1, 2);  // [M, frames, bins, 2]
  const int64_t M = spec.size(0);
  Tensor framed = irfft(spec, f.n_fft) * f.window.to(is_floating(X.dtype()) ? X.dtype() : DType::f32);
  const int64_t padded = f.n_fft + f.hop * (frames - 1);
  const Tensor index = frame_index(frames, f.n_fft, f.hop, X.device());
  Tensor y = scatter_add(zeros({M, padded}, TensorOptions(framed.dtype()).device(X.device())), 1,
                         index.unsqueeze(0).expand({M, -1}).contiguous(), framed.reshape({M, frames * f.n_fft}));
  // The summed squared window: the weight each output sample received.
  Tensor envelope;
  {
    NoGradGuard no_grad;
    const Tensor w2 = square(f.window).to(framed.dtype()).unsqueeze(0).expand({frames, -1}).reshape({1, -1});
    envelope = scatter_add(zeros({1, padded}, TensorOptions(framed.dtype()).device(X.device())), 1,
                           index.unsqueeze(0), w2);
  }
  const int64_t start = o.center ? f.n_fft / 2 : 0;
  int64_t end = length >= 0 ? start + length : (o.center ? padded - f.n_fft / 2 : padded);
  const int64_t avail = std::min(end, padded) - start;
  if (avail < 0) error("istft: length ", length, " leaves no samples");
  Tensor env = envelope.narrow(1, start, avail);
  {
    NoGradGuard no_grad;
    const double smallest = min(env).to(DType::f64).to(Device::cpu()).item<double>();
    if (avail > 0 && smallest < 1e-11)
      error("istft: the window's overlap leaves samples with no weight (NOLA fails): hop ", f.hop,
            " is too long for this window");
  }
  Tensor out = y.narrow(1, start, avail) / env;
  if (end > padded) out = pad(out, {0, end - padded});
  return out.reshape(with_tail(X, 3, {out.size(1)}));
}

Tensor complex_power(const Tensor& X) {
  if (!X.defined() || X.dim() < 1 || X.size(-1) != 2) error("complex_power: input must be [..., 2]");
  return sum(square(X), {-1});
}

Tensor complex_abs(const Tensor& X) { return sqrt(complex_power(X)); }

Tensor mel_filterbank(int sample_rate, int64_t n_fft, int64_t n_mels, double f_min, double f_max, MelScale scale,
                      MelNorm norm) {
  if (sample_rate <= 0) error("mel_filterbank: sample_rate must be positive, got ", sample_rate);
  if (n_fft < 2 || n_mels < 1) error("mel_filterbank: n_fft ", n_fft, " and n_mels ", n_mels, " must be positive");
  if (f_max <= 0) f_max = sample_rate / 2.0;
  if (f_min < 0 || f_min >= f_max) error("mel_filterbank: f_min ", f_min, " must lie in [0, f_max = ", f_max, ")");
  const int64_t bins = n_fft / 2 + 1;
  std::vector<double> fft_hz(static_cast<size_t>(bins)), mel_hz(size_t(n_mels + 2));
  for (int64_t k = 0; k < bins; ++k) fft_hz[size_t(k)] = double(k) * (sample_rate / 2.0) / double(bins - 1);
  const double lo = hz_to_mel(f_min, scale), hi = hz_to_mel(f_max, scale);
  for (int64_t i = 0; i < n_mels + 2; ++i)
    mel_hz[size_t(i)] = mel_to_hz(lo + (hi - lo) * double(i) / double(n_mels + 1), scale);
  std::vector<float> w(size_t(n_mels * bins));
  for (int64_t m = 0; m < n_mels; ++m) {
    const double a = mel_hz[size_t(m)], b = mel_hz[size_t(m + 1)], c = mel_hz[size_t(m + 2)];
    const double enorm = norm == MelNorm::slaney ? 2.0 / (c - a) : 1.0;
    for (int64_t k = 0; k < bins; ++k) {
      const double lower = (fft_hz[size_t(k)] - a) / (b - a), upper = (c - fft_hz[size_t(k)]) / (c - b);
      w[size_t(m * bins + k)] = float(std::max(0.0, std::min(lower, upper)) * enorm);
    }
  }
  return tensor(w, {n_mels, bins});
}

Tensor mel_spectrogram(const Tensor& x, const MelOptions& o) {
  Tensor spec = stft(x, o.stft);
  Tensor power = o.power == 2.0 ? complex_power(spec) : pow(complex_abs(spec), o.power);
  const Tensor fb = mel_filterbank(o.sample_rate, o.stft.n_fft, o.n_mels, o.f_min, o.f_max, o.scale, o.norm)
                        .to(power.dtype())
                        .to(x.device());
  return matmul(fb, power);  // [n_mels, bins] x [..., bins, frames]
}

Tensor whisper_log_mel(const Tensor& x, int64_t n_mels) {
  StftOptions so;
  so.n_fft = 400;
  so.hop_length = 160;
  Tensor spec = stft(x, so);
  Tensor power = complex_power(spec.narrow(-2, 0, spec.size(-2) - 1));
  const Tensor fb = mel_filterbank(16000, 400, n_mels, 0.0, 8000.0, MelScale::slaney, MelNorm::slaney)
                        .to(power.dtype())
                        .to(x.device());
  Tensor log_spec = log(clamp_min(matmul(fb, power), 1e-10)) * (1.0 / std::log(10.0));
  // Whisper floors at 8 below the maximum of the whole input (its clips are single).
  Tensor floor = max(log_spec).detach() - 8.0;
  return (maximum(log_spec, floor) + 4.0) / 4.0;
}

Tensor griffin_lim(const Tensor& magnitude, const GriffinLimOptions& o, Generator* gen) {
  if (!magnitude.defined() || magnitude.dim() < 2) error("griffin_lim: magnitude must be [..., bins, frames]");
  if (o.n_iter < 0) error("griffin_lim: n_iter must be >= 0, got ", o.n_iter);
  if (o.momentum < 0 || o.momentum >= 1) error("griffin_lim: momentum must lie in [0, 1), got ", o.momentum);
  NoGradGuard no_grad;
  const Tensor mag = magnitude.to(DType::f32).unsqueeze(-1);  // [..., bins, frames, 1]
  Shape cshape = magnitude.shape();
  cshape.push_back(2);
  const TensorOptions opt = TensorOptions(DType::f32).device(magnitude.device());
  Tensor angles;
  if (o.rand_init) {
    angles = rand(cshape, TensorOptions(DType::f32), gen).to(magnitude.device());  // as torch.rand of a complex dtype
  } else {
    angles = cat({ones(magnitude.shape(), opt).unsqueeze(-1), zeros(magnitude.shape(), opt).unsqueeze(-1)}, -1);
  }
  Tensor prev;
  const double carry = o.momentum / (1.0 + o.momentum);
  for (int it = 0; it < o.n_iter; ++it) {
    const Tensor rebuilt = stft(istft(mag * angles, o.stft, o.length), o.stft);
    angles = prev.defined() && o.momentum > 0 ? rebuilt - prev * carry : rebuilt;
    angles = angles / (complex_abs(angles).unsqueeze(-1) + 1e-16);
    prev = rebuilt;
  }
  return istft(mag * angles, o.stft, o.length);
}

}  // namespace fm::audio

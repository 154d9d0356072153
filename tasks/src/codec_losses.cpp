#include "fm/tasks/codec_losses.h"

#include <algorithm>
#include <cmath>

#include "fm/audio/spectral.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

// [B, 1, T] or [B, T] -> [B, T]; both arguments of one shape.
Tensor clips(const Tensor& x, const Tensor& like, const char* op) {
  if (x.shape() != like.shape() || (x.dim() != 2 && !(x.dim() == 3 && x.size(1) == 1)) || x.size(0) == 0)
    error(op, ": expects estimate and reference of one shape, [B, 1, T] or [B, T], got ", x.shape(), " and ",
          like.shape());
  return x.dim() == 3 ? x.reshape({x.size(0), x.size(2)}) : x;
}

}  // namespace

Tensor mel_distance(const Tensor& estimate, const Tensor& reference, const MelDistanceOptions& o) {
  const Tensor est = clips(estimate, reference, "mel_distance"), ref = clips(reference, estimate, "mel_distance");
  if (o.min_log2 < 2 || o.max_log2 < o.min_log2 || o.max_log2 > 16)
    error("mel_distance: needs 2 <= min_log2 <= max_log2 <= 16, got ", o.min_log2, " and ", o.max_log2);
  if (o.n_mels < 1 || !(o.floor > 0)) error("mel_distance: needs n_mels >= 1 and floor > 0");
  const double inv_ln10 = 1.0 / std::log(10.0);
  Tensor total;
  for (int64_t i = o.min_log2; i <= o.max_log2; ++i) {
    audio::MelOptions m;
    m.sample_rate = o.sample_rate;
    m.stft.n_fft = int64_t(1) << i;
    m.stft.hop_length = m.stft.n_fft / 4;
    m.stft.pad_mode = "constant";
    m.n_mels = std::min(o.n_mels, m.stft.n_fft / 4);
    auto log_mel = [&](const Tensor& x) { return log(audio::mel_spectrogram(x, m) + o.floor) * inv_ln10; };
    const Tensor d = mean(abs(log_mel(est) - log_mel(ref)), {1, 2});  // [B]
    total = total.defined() ? total + d : d;
  }
  return total * (1.0 / double(o.max_log2 - o.min_log2 + 1));
}

Tensor si_snr(const Tensor& estimate, const Tensor& reference) {
  constexpr double eps = 1e-8;
  const Tensor est = clips(estimate, reference, "si_snr"), ref = clips(reference, estimate, "si_snr");
  const Tensor e = est - mean(est, {1}, true), r = ref - mean(ref, {1}, true);
  const Tensor projection = r * (sum(e * r, {1}, true) / (sum(square(r), {1}, true) + eps));
  const Tensor noise = e - projection;
  return log((sum(square(projection), {1}) + eps) / (sum(square(noise), {1}) + eps)) * (10.0 / std::log(10.0));
}

}  // namespace fm::tasks

#include "fm/audio/spectrogram_embedding.h"

#include <cmath>

#include "fm/autocast.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::audio {
namespace {

void check_grid(const char* what, int64_t n_mels, int64_t frames, int64_t pf, int64_t pt) {
  if (pf < 1 || pt < 1 || n_mels % pf != 0 || frames % pt != 0)
    error(what, ": a [", n_mels, ", ", frames, "] spectrogram does not split into ", pf, " x ", pt, " patches");
}

}  // namespace

Tensor patchify_spectrogram(const Tensor& spec, int64_t pf, int64_t pt) {
  if (spec.dim() != 3) error("patchify_spectrogram: input must be [B, n_mels, frames], got ", spec.shape());
  const int64_t B = spec.size(0), F = spec.size(1), T = spec.size(2);
  check_grid("patchify_spectrogram", F, T, pf, pt);
  // [B, F/pf, pf, T/pt, pt] -> [B, T/pt, F/pf, pf, pt]
  return spec.reshape({B, F / pf, pf, T / pt, pt}).permute({0, 3, 1, 2, 4}).reshape({B, (T / pt) * (F / pf), pf * pt});
}

Tensor unpatchify_spectrogram(const Tensor& patches, int64_t pf, int64_t pt, int64_t F, int64_t T) {
  check_grid("unpatchify_spectrogram", F, T, pf, pt);
  if (patches.dim() != 3 || patches.size(1) != (F / pf) * (T / pt) || patches.size(2) != pf * pt)
    error("unpatchify_spectrogram: patches must be [B, ", (F / pf) * (T / pt), ", ", pf * pt, "], got ",
          patches.shape());
  const int64_t B = patches.size(0);
  return patches.reshape({B, T / pt, F / pf, pf, pt}).permute({0, 2, 3, 1, 4}).reshape({B, F, T});
}

Tensor log_mel_features(const Tensor& x, const LogMelFeatures& o) {
  if (o.std <= 0) error("log_mel_features: std must be positive, got ", o.std);
  Tensor mel = mel_spectrogram(x.dim() == 1 ? x.unsqueeze(0) : x, o.mel);
  return (log(mel + 1e-6) - o.mean) / (2.0 * o.std);
}

int64_t feature_frames(int64_t samples, const LogMelFeatures& o) {
  const int64_t hop = o.mel.stft.hop_length > 0 ? o.mel.stft.hop_length : o.mel.stft.n_fft / 4;
  return o.mel.stft.center ? 1 + samples / hop : 1 + (samples - o.mel.stft.n_fft) / hop;
}

ClipFeatures::ClipFeatures(const LogMelFeatures& f, int64_t samples, int64_t patch_time, const char* who)
    : log_mel(f), clip_samples(samples) {
  if (patch_time < 1) error(who, ": patch_time must be positive, got ", patch_time);
  frames = feature_frames(samples, f) / patch_time * patch_time;
  if (frames <= 0) error(who, ": ", samples, " samples give fewer frames than patch_time ", patch_time);
}

Tensor ClipFeatures::operator()(const Tensor& waveforms, const char* who) const {
  const Tensor x = waveforms.dim() == 3 && waveforms.size(1) == 1 ? waveforms.select(1, 0) : waveforms;
  if (x.dim() != 2 || x.size(1) != clip_samples)
    error(who, ": waveforms must be [B, ", clip_samples, "] or [B, 1, ", clip_samples, "], got ", waveforms.shape());
  AutocastGuard f32(std::nullopt);
  return log_mel_features(x, log_mel).narrow(2, 0, frames);
}

SpectrogramEmbedding::SpectrogramEmbedding(const SpectrogramEmbeddingOptions& o, Generator* gen) : options(o) {
  check_grid("SpectrogramEmbedding", o.n_mels, o.frames, o.patch_freq, o.patch_time);
  const int64_t n = num_patches() + (o.cls_token ? 1 : 0);
  proj = register_module("proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.patch_freq * o.patch_time,
                                                                                 o.d_model, true}));
  pos = register_parameter("pos", zeros({n, o.d_model}), nn::kNoDecay);
  if (o.cls_token) cls = register_parameter("cls", zeros({o.d_model}), nn::kNoDecay);
  const double scale = 1.0 / std::sqrt(double(o.d_model));  // as the image adapter (open_clip's)
  nn::init::normal_(pos, 0.0, scale, gen);
  if (o.cls_token) nn::init::normal_(cls, 0.0, scale, gen);
}

int64_t SpectrogramEmbedding::num_patches() const {
  return (options.n_mels / options.patch_freq) * (options.frames / options.patch_time);
}

Tensor SpectrogramEmbedding::forward(const Tensor& spec) const {
  if (spec.dim() != 3 || spec.size(1) != options.n_mels || spec.size(2) != options.frames)
    error("SpectrogramEmbedding: spectrograms must be [B, ", options.n_mels, ", ", options.frames, "], got ",
          spec.shape());
  Tensor x = proj->forward(patchify_spectrogram(spec, options.patch_freq, options.patch_time));
  if (options.cls_token) x = cat({cls.view({1, 1, options.d_model}).expand({x.size(0), 1, options.d_model}), x}, 1);
  return x + pos;
}

SpectrogramHead::SpectrogramHead(const SpectrogramEmbeddingOptions& o, Generator* gen) : options(o) {
  check_grid("SpectrogramHead", o.n_mels, o.frames, o.patch_freq, o.patch_time);
  proj = register_module("proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.d_model,
                                                                                 o.patch_freq * o.patch_time, true}));
}

Tensor SpectrogramHead::forward(const Tensor& tokens) const {
  return unpatchify_spectrogram(proj->forward(tokens), options.patch_freq, options.patch_time, options.n_mels,
                                options.frames);
}

}  // namespace fm::audio

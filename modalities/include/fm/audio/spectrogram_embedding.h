#pragma once
// The spectrogram adapter (DESIGN.md; AST, Gong et al. 2021): a log-mel
// spectrogram [B, n_mels, frames] cut into patch_freq x patch_time patches,
// each through one Linear, an optional class token prepended and learned
// positions added, so audio enters the shared Transformer as images do.
// Patches run in time order (all frequency patches of the first time slice,
// then the next), so a sequence prefix is a prefix of the clip. The inverse
// head maps tokens back to patches and the spectrogram.
#include "fm/audio/spectral.h"
#include "fm/nn/layers.h"
#include "fm/random.h"

namespace fm::audio {

// [B, F, T] -> [B, (T / pt) * (F / pf), pf * pt] (time-major patches, each row-major
// in (frequency, time)); F and T must be multiples of the patch sides.
Tensor patchify_spectrogram(const Tensor& spec, int64_t patch_freq, int64_t patch_time);
// The inverse: [B, N, pf * pt] -> [B, F, T].
Tensor unpatchify_spectrogram(const Tensor& patches, int64_t patch_freq, int64_t patch_time, int64_t n_mels,
                              int64_t frames);

// Waveform -> the adapter's input: log(mel power + 1e-6), normalised as AST
// does, (v - mean) / (2 std), with the data set's mean and std.
struct LogMelFeatures {
  MelOptions mel;  // sample rate, STFT, n_mels
  double mean = 0.0, std = 1.0;
};
// x [B, T] (or [T]) -> [B, n_mels, frames].
Tensor log_mel_features(const Tensor& x, const LogMelFeatures& o);
// Frames of a clip of `samples` samples (centred STFT).
int64_t feature_frames(int64_t samples, const LogMelFeatures& o);

// What an audio tower reads from clips of `clip_samples` samples: their
// log-mel features with the frames cut to whole patches. The towers of the
// caption and clap kinds share it.
struct ClipFeatures {
  LogMelFeatures log_mel;
  int64_t clip_samples = 64000;
  int64_t frames = 0;  // feature_frames(clip_samples) cut to a multiple of patch_time
  ClipFeatures() = default;
  // Throws, naming `who`, when a clip gives fewer frames than one patch.
  ClipFeatures(const LogMelFeatures& f, int64_t clip_samples, int64_t patch_time, const char* who);
  // waveforms [B, clip_samples] or [B, 1, clip_samples] -> [B, n_mels, frames],
  // in f32 even under mixed precision (a log of small powers needs it).
  Tensor operator()(const Tensor& waveforms, const char* who) const;
};

struct SpectrogramEmbeddingOptions {
  int64_t n_mels = 64, frames = 256;
  int64_t patch_freq = 16, patch_time = 16;
  int64_t d_model = 128;
  bool cls_token = true;
};

class SpectrogramEmbedding : public nn::Module {
 public:
  explicit SpectrogramEmbedding(const SpectrogramEmbeddingOptions& o, Generator* init_gen = nullptr);
  // [B, n_mels, frames] -> [B, N (+1), d_model].
  Tensor forward(const Tensor& spec) const;
  int64_t num_patches() const;
  SpectrogramEmbeddingOptions options;
  std::shared_ptr<nn::Linear> proj;  // [d_model, pf * pt]
  Tensor cls;                        // [d_model] (cls_token only)
  Tensor pos;                        // [N (+1), d_model]
};

// The inverse head: patch tokens [B, N, d_model] (no class token) -> [B, n_mels, frames].
class SpectrogramHead : public nn::Module {
 public:
  explicit SpectrogramHead(const SpectrogramEmbeddingOptions& o, Generator* init_gen = nullptr);
  Tensor forward(const Tensor& tokens) const;
  SpectrogramEmbeddingOptions options;
  std::shared_ptr<nn::Linear> proj;  // [pf * pt, d_model]
};

}  // namespace fm::audio

#pragma once
// CLAP (Elizalde et al. 2023; Wu et al. 2023) on the shared core, with an
// AST-style audio encoder (Gong et al. 2021): an audio tower and CLIP's text
// tower trained with the contrastive objective. The audio tower computes its own input from
// waveforms, so it runs wherever the tensors are:
//   waveform [B, T] -> power mel spectrogram (centred STFT, Hann window,
//   HTK mel bands without normalisation, torchaudio's MelSpectrogram)
//   -> log(mel + 1e-6), AST's (v - mean) / (2 std) -> the first frames that
//   fill whole patches -> the spectrogram adapter (patch_freq x patch_time
//   patches in time order, a class token with pool = cls, learned positions)
//   -> a bidirectional Transformer -> CLS or mean pooling -> projection.
// The text tower, logit scale (and SigLIP's bias) and loss are
// ContrastiveModel's, exactly CLIP's.
#include <memory>
#include <string>

#include "fm/audio/spectrogram_embedding.h"
#include "fm/tasks/contrastive_model.h"

namespace fm::tasks {

struct CLAPOptions {
  // audio tower: clips of clip_samples samples at sample_rate
  int64_t sample_rate = 16000, clip_samples = 64000;
  int64_t n_fft = 512, hop = 256, n_mels = 64;
  double f_max = 0.0;  // highest mel band edge in Hz (<= 0: sample_rate / 2)
  int64_t patch_freq = 16, patch_time = 16;
  double feature_mean = -6.0, feature_std = 4.0;  // log(mel + 1e-6) of clips near full scale spans about [-14, 2]
  int64_t audio_width = 128, audio_layers = 4, audio_heads = 4;
  std::string pool = "cls";  // "cls" or "mean"
  // text tower (CLIP's), joint embedding, shared core, SigLIP's bias
  TextTowerOptions text;
};

class CLAP : public ContrastiveModel {
 public:
  explicit CLAP(const CLAPOptions& o, Generator* init_gen = nullptr);
  // waveforms [B, clip_samples] (or [B, 1, clip_samples]) f32 ->
  // L2-normalised features [B, embed_dim].
  Tensor encode_audio(const Tensor& waveforms) const;
  // The tower's input: waveforms -> normalised log-mel [B, n_mels, frames],
  // frames a multiple of patch_time.
  Tensor features(const Tensor& waveforms) const;
  // encode_audio after features(): log-mel [B, n_mels, frames] -> [B, embed_dim].
  Tensor encode_features(const Tensor& log_mel) const;

  CLAPOptions options;
  fm::audio::ClipFeatures clip_features;  // what features() computes
  std::shared_ptr<fm::audio::SpectrogramEmbedding> spec_embed;
  std::shared_ptr<nn::Transformer> audio;  // also the text tower's core when shared
  std::shared_ptr<nn::Linear> audio_proj;
};

}  // namespace fm::tasks

#include "fm/tasks/clap_model.h"

#include "fm/ops.h"

namespace fm::tasks {

CLAP::CLAP(const CLAPOptions& o, Generator* gen) : options(o) {
  check_pool("CLAP", o.pool);
  fm::audio::LogMelFeatures log_mel;
  log_mel.mel.sample_rate = int(o.sample_rate);
  log_mel.mel.stft.n_fft = o.n_fft;
  log_mel.mel.stft.hop_length = o.hop;
  log_mel.mel.n_mels = o.n_mels;
  log_mel.mel.f_max = o.f_max;
  log_mel.mean = o.feature_mean;
  log_mel.std = o.feature_std;
  clip_features = fm::audio::ClipFeatures(log_mel, o.clip_samples, o.patch_time, "CLAP");
  fm::audio::SpectrogramEmbeddingOptions se;
  se.n_mels = o.n_mels;
  se.patch_freq = o.patch_freq;
  se.patch_time = o.patch_time;
  se.frames = clip_features.frames;
  se.d_model = o.audio_width;
  se.cls_token = o.pool == "cls";
  spec_embed = register_module("spec_embed", std::make_shared<fm::audio::SpectrogramEmbedding>(se, gen));
  audio = register_module("audio", make_core(o.audio_width, o.audio_layers, o.audio_heads));
  audio_proj = register_module("audio_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.audio_width, o.text.embed_dim, false}));
  add_text_tower("CLAP", o.text, audio);
  init_towers(*audio, *audio_proj, gen);
}

Tensor CLAP::features(const Tensor& waveforms) const { return clip_features(waveforms, "CLAP"); }

Tensor CLAP::encode_features(const Tensor& mel) const {
  // Bidirectional; the final norm acts on every token.
  return pool_project(audio->forward(spec_embed->forward(mel)), options.pool, *audio_proj);
}

Tensor CLAP::encode_audio(const Tensor& waveforms) const { return encode_features(features(waveforms)); }

}  // namespace fm::tasks

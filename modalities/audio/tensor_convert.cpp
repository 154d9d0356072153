// Interleaved frames to and from libfm's [C, T] waveform tensors.
#include "codecs.h"
#include "fm/error.h"
#include "fm/factory.h"

namespace fm::audio {

fm::Tensor to_tensor(const Audio& audio) {
  detail::check_audio(audio, "audio to_tensor");
  const int C = audio.channels;
  const int64_t T = audio.frames();
  std::vector<float> planar(audio.samples.size());
  for (int64_t t = 0; t < T; ++t)
    for (int c = 0; c < C; ++c) planar[size_t(c) * T + t] = audio.samples[size_t(t) * C + c];
  return fm::tensor(planar, Shape{C, T});
}

Audio from_tensor(const fm::Tensor& waveform, int sample_rate) {
  if ((waveform.dim() != 1 && waveform.dim() != 2) || !is_floating(waveform.dtype()))
    error("audio from_tensor: expected a floating [C, T] or [T] tensor, got ", waveform.dtype(), " ", waveform.shape());
  const int64_t C = waveform.dim() == 2 ? waveform.size(0) : 1, T = waveform.size(waveform.dim() - 1);
  const std::vector<float> planar = waveform.to(Device::cpu()).to(DType::f32).to_vector<float>();
  Audio audio;
  audio.sample_rate = sample_rate;
  audio.channels = int(C);
  audio.samples.resize(planar.size());
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) audio.samples[size_t(t * C + c)] = planar[size_t(c * T + t)];
  detail::check_audio(audio, "audio from_tensor");
  return audio;
}

}  // namespace fm::audio

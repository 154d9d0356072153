// Channel mixing. A mean and a copy need no library: libswresample's matrix
// mixer would scale a stereo downmix by 1/sqrt(2), not the mean that
// torchaudio and librosa take.
#include "codecs.h"
#include "fm/error.h"

namespace fm::audio {

Audio to_mono(const Audio& audio) { return mix(audio, 1); }

Audio mix(const Audio& audio, int channels) {
  detail::check_audio(audio, "audio mix");
  const int C = audio.channels;
  const int64_t T = audio.frames();
  if (channels < 1) error("audio mix: ", channels, " channels requested");
  if (channels == C) return audio;
  if (channels != 1 && C != 1)
    error("audio mix: ", C, " channels to ", channels, ": only to 1 channel or from 1 channel is supported");
  Audio out;
  out.sample_rate = audio.sample_rate;
  out.channels = channels;
  out.samples.resize(size_t(T) * channels);
  for (int64_t t = 0; t < T; ++t) {
    const float* in = &audio.samples[size_t(t) * C];
    if (channels == 1) {
      double sum = 0;
      for (int c = 0; c < C; ++c) sum += in[c];
      out.samples[size_t(t)] = float(sum / C);
    } else {
      for (int c = 0; c < channels; ++c) out.samples[size_t(t) * channels + c] = in[0];
    }
  }
  return out;
}

}  // namespace fm::audio

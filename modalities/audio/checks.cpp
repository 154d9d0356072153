// Validation shared by the readers, writers and resampler.
#include "codecs.h"
#include "fm/error.h"

namespace fm::audio::detail {

void check_sample_rate(int rate, const std::string& op) {
  if (rate < kMinSampleRate || rate > kMaxSampleRate)
    error(op, ": sample rate ", rate, " Hz outside [", kMinSampleRate, ", ", kMaxSampleRate, "]");
}

void check_audio(const Audio& audio, const std::string& op) {
  if (audio.channels < 1) error(op, ": ", audio.channels, " channels");
  check_sample_rate(audio.sample_rate, op);
  if (audio.samples.size() % size_t(audio.channels) != 0)
    error(op, ": ", audio.samples.size(), " samples is not a whole number of ", audio.channels, "-channel frames");
  if (audio.samples.empty()) error(op, ": no samples");
}

}  // namespace fm::audio::detail

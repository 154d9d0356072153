// fm::audio::decode (libsndfile, else FFmpeg) on arbitrary bytes: audio it
// returns must have a rate in range, channels and whole frames.
#include <cstdint>

#include "fm/audio/audio.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const fm::audio::Audio a = fm::audio::decode(data, size, "fuzz");
    if (a.sample_rate < fm::audio::kMinSampleRate || a.sample_rate > fm::audio::kMaxSampleRate || a.channels <= 0 ||
        a.samples.size() % size_t(a.channels) != 0 || a.frames() == 0)
      __builtin_trap();
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

// The one check libsndfile does not make: it reads a WAV whose data chunk
// claims more bytes than the file holds (a truncated download, a cut copy)
// as the part that is there, with only a line in its log. Walking the RIFF
// chunk headers (8 bytes each) is all it takes, so no library is needed.
#include <cstdint>
#include <cstring>

#include "codecs.h"
#include "fm/error.h"

namespace fm::audio::detail {
namespace {

uint32_t le32(const unsigned char* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

}  // namespace

void check_wav_data_size(const void* bytes, size_t size, const std::string& name) {
  const auto* b = static_cast<const unsigned char*>(bytes);
  if (size < 12 || std::memcmp(b, "RIFF", 4) != 0 || std::memcmp(b + 8, "WAVE", 4) != 0) return;
  uint64_t pos = 12;
  while (pos + 8 <= size) {
    const uint32_t chunk = le32(b + pos + 4);
    if (std::memcmp(b + pos, "data", 4) == 0) {
      const uint64_t held = size - (pos + 8);
      // 0xFFFFFFFF: written by a streaming encoder that could not seek back.
      if (chunk != 0xFFFFFFFFu && chunk > held)
        error("audio read: ", name, ": WAV data chunk claims ", chunk, " bytes but the file holds ", held,
              " (truncated or corrupt file)");
      return;
    }
    pos += 8 + uint64_t(chunk) + (chunk & 1);  // chunks are padded to even sizes
  }
}

}  // namespace fm::audio::detail

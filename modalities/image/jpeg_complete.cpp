#include "jpeg_complete.h"

#include <cstdint>

namespace fm::image {

bool is_jpeg(const void* bytes, size_t size) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  return size >= 2 && p[0] == 0xFF && p[1] == 0xD8;
}

// Walks the segments (FF xx, then a 2-byte big-endian length that counts
// itself) and, after each start-of-scan, the entropy-coded data, where FF is
// only ever followed by 00 (a stuffed byte) or a restart marker D0..D7.
bool jpeg_complete(const void* bytes, size_t size) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  size_t i = 2;  // after SOI
  bool in_scan = false;
  while (i + 1 < size) {
    if (p[i] != 0xFF) {
      if (!in_scan) return false;  // garbage between segments
      ++i;
      continue;
    }
    const uint8_t marker = p[i + 1];
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (in_scan && (marker == 0x00 || (marker >= 0xD0 && marker <= 0xD7))) {
      i += 2;
      continue;
    }
    if (marker == 0xD9) return true;  // EOI
    in_scan = false;
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) {  // no length
      i += 2;
      continue;
    }
    if (i + 3 >= size) return false;
    const size_t length = (size_t(p[i + 2]) << 8) | p[i + 3];
    if (length < 2) return false;
    i += 2 + length;
    in_scan = marker == 0xDA;  // SOS: entropy-coded data follows its header
  }
  return false;
}

}  // namespace fm::image

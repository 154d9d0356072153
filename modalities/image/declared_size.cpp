#include "declared_size.h"

#include <cstring>
#include <cstdlib>

namespace fm::image {
namespace {

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
int32_t le32(const uint8_t* p) { return int32_t(uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24); }

bool jpeg_size(const uint8_t* p, size_t n, int64_t& w, int64_t& h) {
  size_t i = 2;  // after SOI
  while (i + 4 <= n) {
    if (p[i] != 0xFF) return false;
    const uint8_t m = p[i + 1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD9)) {  // markers without a length
      i += 2;
      continue;
    }
    const size_t len = be16(p + i + 2);
    // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      if (i + 9 > n) return false;
      h = be16(p + i + 5);
      w = be16(p + i + 7);
      return true;
    }
    if (len < 2) return false;
    i += 2 + len;
  }
  return false;
}

}  // namespace

bool declared_size(const void* bytes, size_t n, int64_t& width, int64_t& height) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  if (n >= 24 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0 && std::memcmp(p + 12, "IHDR", 4) == 0) {
    width = be32(p + 16), height = be32(p + 20);
    return true;
  }
  if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8) return jpeg_size(p, n, width, height);
  if (n >= 26 && p[0] == 'B' && p[1] == 'M') {
    width = std::llabs(le32(p + 18)), height = std::llabs(le32(p + 22));  // negative height: top-down rows
    return true;
  }
  return false;
}

}  // namespace fm::image

#pragma once
// bf16 and f16 storage types. They are stored as 16 bits and converted to f32
// for arithmetic (on the CPU all math on them runs in f32).
#include <cstdint>
#include <cmath>
#include <cstring>

#include "fm/host_device.h"

namespace fm {

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  FM_HOST_DEVICE explicit bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a quiet NaN
      bits = uint16_t((u >> 16) | 0x40);
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    bits = uint16_t(u >> 16);
  }
  FM_HOST_DEVICE operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

struct f16 {
  uint16_t bits = 0;
  f16() = default;
  FM_HOST_DEVICE explicit f16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {  // inf or NaN
      bits = uint16_t(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    } else if (a >= 0x47800000u) {  // overflow to inf
      bits = uint16_t(sign | 0x7c00u);
    } else if (a < 0x38800000u) {  // subnormal or zero: scale by 2^24, round
      float af;
      std::memcpy(&af, &a, 4);
      bits = uint16_t(sign | uint32_t(std::nearbyint(af * 16777216.0f)));
    } else {
      uint32_t m = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;  // round to nearest even
      bits = uint16_t(sign | (m >> 13));
    }
  }
  FM_HOST_DEVICE operator float() const {
    uint32_t sign = uint32_t(bits & 0x8000u) << 16;
    uint32_t exp = (bits >> 10) & 0x1fu;
    uint32_t man = bits & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
      float f = float(man) * (1.0f / 16777216.0f);
      std::memcpy(&u, &f, 4);
      u |= sign;
    } else if (exp == 31) {
      u = sign | 0x7f800000u | (man << 13);
    } else {
      u = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

}  // namespace fm

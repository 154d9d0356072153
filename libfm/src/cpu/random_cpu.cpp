// Philox draws on the CPU: element i takes lane i % k of counter block i / k
// (k = 4 for 32-bit draws, 2 for 64-bit), so values depend only on
// (seed, offset, i), never on the thread count.
#include <cmath>

#include "dispatch.h"
#include "fm/kernels/core.h"

namespace fm::cpu {
namespace {

using kernels::RandomKind;

template <class T>
void fill_random(T* out, int64_t n, RandomKind kind, PhiloxState s, double a, double b) {
  constexpr bool wide = std::is_same_v<T, double> || std::is_same_v<T, int64_t>;
  constexpr int64_t per_block = wide ? 2 : 4;
  const int64_t nblocks = (n + per_block - 1) / per_block;
  const double range = b - a;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const auto r = philox_block(s, uint64_t(blk));
    double v[4];
    if constexpr (wide) {
      const double u0 = uints_to_unit_double(r[0], r[1]), u1 = uints_to_unit_double(r[2], r[3]);
      if (kind == RandomKind::normal) {
        const double rad = std::sqrt(-2.0 * std::log(u0));
        v[0] = rad * std::cos(2 * M_PI * u1);
        v[1] = rad * std::sin(2 * M_PI * u1);
      } else if (kind == RandomKind::uniform) {
        v[0] = 1.0 - u0;  // (0, 1] -> [0, 1)
        v[1] = 1.0 - u1;
      } else {
        const uint64_t span = uint64_t(range);
        v[0] = double(((uint64_t(r[0]) << 32) | r[1]) % span);
        v[1] = double(((uint64_t(r[2]) << 32) | r[3]) % span);
      }
    } else {
      for (int l = 0; l < 4; l += 2) {
        const float u0 = uint_to_unit_float(r[l]), u1 = uint_to_unit_float(r[l + 1]);
        if (kind == RandomKind::normal) {
          const float rad = std::sqrt(-2.0f * std::log(u0));
          v[l] = rad * std::cos(float(2 * M_PI) * u1);
          v[l + 1] = rad * std::sin(float(2 * M_PI) * u1);
        } else if (kind == RandomKind::uniform) {
          v[l] = 1.0f - u0;
          v[l + 1] = 1.0f - u1;
        } else {
          v[l] = double((uint64_t(r[l]) * uint64_t(range)) >> 32);
          v[l + 1] = double((uint64_t(r[l + 1]) * uint64_t(range)) >> 32);
        }
      }
    }
    for (int64_t l = 0; l < per_block; ++l) {
      const int64_t i = blk * per_block + l;
      if (i >= n) break;
      // Explicit fused multiply-adds: the same rounding as the CUDA kernel,
      // whatever the compiler would contract.
      const double x = kind == RandomKind::normal    ? std::fma(b, v[l], a)
                       : kind == RandomKind::uniform ? std::fma(range, v[l], a)
                                                     : a + v[l];
      if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) out[i] = T(float(x));
      else out[i] = T(x);
    }
  }
}

void random_kernel(const Tensor& out, RandomKind kind, PhiloxState s, double a, double b) {
  if (!out.is_contiguous()) error("random: output must be contiguous");
  if (kind == RandomKind::randint && out.dtype() != DType::i64 && b - a > 4294967296.0)
    error("randint: range wider than 2^32 needs an int64 tensor");
  dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill_random<T>(static_cast<T*>(out.data_ptr()), out.numel(), kind, s, a, b);
  });
}

FM_REGISTER_KERNEL(kernels::random, DeviceType::cpu, random_kernel);

}  // namespace
}  // namespace fm::cpu

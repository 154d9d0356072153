// Philox draws and dropout on the GPU. One thread per counter block, with the
// CPU backend's lane layout (element i: lane i % k of block i / k), so a
// stream gives the same numbers on either device.
#include <cmath>
#include <type_traits>

#include "fm/kernels/attention.h"
#include "fm/kernels/core.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;
using kernels::RandomKind;

// The CPU build contracts a + scale * v into an FMA (GCC, -march=native);
// spelling it out keeps uniform draws bit-identical whatever nvcc decides.
__device__ __forceinline__ double affine(double a, double scale, double v) { return fma(scale, v, a); }

template <class T>
__global__ void random_kernel(T* out, int64_t n, RandomKind kind, PhiloxState s, double a, double b) {
  constexpr bool wide = std::is_same_v<T, double> || std::is_same_v<T, int64_t>;
  constexpr int per_block = wide ? 2 : 4;
  const int64_t nblocks = (n + per_block - 1) / per_block;
  const double range = b - a;
  for (int64_t blk = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; blk < nblocks;
       blk += int64_t(gridDim.x) * blockDim.x) {
    const auto r = philox_block(s, uint64_t(blk));
    double v[4];
    if constexpr (wide) {
      const double u0 = uints_to_unit_double(r[0], r[1]), u1 = uints_to_unit_double(r[2], r[3]);
      if (kind == RandomKind::normal) {
        const double rad = sqrt(-2.0 * log(u0));
        v[0] = rad * cos(2 * M_PI * u1);
        v[1] = rad * sin(2 * M_PI * u1);
      } else if (kind == RandomKind::uniform) {
        v[0] = 1.0 - u0;  // (0, 1] -> [0, 1)
        v[1] = 1.0 - u1;
      } else {
        const uint64_t span = uint64_t(range);
        v[0] = double(((uint64_t(r[0]) << 32) | r[1]) % span);
        v[1] = double(((uint64_t(r[2]) << 32) | r[3]) % span);
      }
    } else {
#pragma unroll
      for (int l = 0; l < 4; l += 2) {
        const float u0 = uint_to_unit_float(r[l]), u1 = uint_to_unit_float(r[l + 1]);
        if (kind == RandomKind::normal) {
          const float rad = sqrtf(-2.0f * logf(u0));
          v[l] = rad * cosf(float(2 * M_PI) * u1);
          v[l + 1] = rad * sinf(float(2 * M_PI) * u1);
        } else if (kind == RandomKind::uniform) {
          v[l] = 1.0f - u0;
          v[l + 1] = 1.0f - u1;
        } else {
          v[l] = double((uint64_t(r[l]) * uint64_t(range)) >> 32);
          v[l + 1] = double((uint64_t(r[l + 1]) * uint64_t(range)) >> 32);
        }
      }
    }
#pragma unroll
    for (int l = 0; l < per_block; ++l) {
      const int64_t i = blk * per_block + l;
      if (i >= n) break;
      const double x = kind == RandomKind::normal    ? affine(a, b, v[l])
                       : kind == RandomKind::uniform ? affine(a, range, v[l])
                                                     : a + v[l];
      if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) out[i] = T(float(x));
      else out[i] = T(x);
    }
  }
}

void random(const Tensor& out, RandomKind kind, PhiloxState s, double a, double b) {
  if (!out.is_contiguous()) error("random: output must be contiguous");
  if (kind == RandomKind::randint && out.dtype() != DType::i64 && b - a > 4294967296.0)
    error("randint: range wider than 2^32 needs an int64 tensor");
  const int64_t n = out.numel();
  if (n == 0) return;
  kernels::dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t per_block = std::is_same_v<T, double> || std::is_same_v<T, int64_t> ? 2 : 4;
    random_kernel<<<blocks_for((n + per_block - 1) / per_block), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), n, kind, s, a, b);
    check_launch();
  });
}

// The keep test compares the exact f32 uniform with p in f64, as the CPU.
template <class T>
__global__ void dropout_kernel(T* out, const T* x, int64_t n, PhiloxState s, double p, compute_t<T> scale) {
  using C = compute_t<T>;
  const int64_t nblocks = (n + 3) / 4;
  for (int64_t blk = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; blk < nblocks;
       blk += int64_t(gridDim.x) * blockDim.x) {
    const auto bits = philox_block(s, uint64_t(blk));
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = blk * 4 + lane;
      if (i >= n) break;
      const bool keep = double(uint_to_unit_float(bits[lane])) > p;
      out[i] = keep ? T(C(x[i]) * scale) : T(C(0));
    }
  }
}

void dropout(const Tensor& out, const Tensor& x, PhiloxState s, double p) {
  kernels::dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const int64_t n = x.numel();
    if (n == 0) return;
    dropout_kernel<<<blocks_for((n + 3) / 4), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), n, s, p, C(1.0 / (1.0 - p)));
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::random, DeviceType::cuda, random);
FM_REGISTER_KERNEL(kernels::dropout, DeviceType::cuda, dropout);

}  // namespace
}  // namespace fm::cuda

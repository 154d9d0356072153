#pragma once
// Kernel slots of the core ops. Conventions: outputs come first and are
// allocated by the caller (contiguous unless stated); inputs may be strided
// views (broadcast inputs have stride 0); dtypes are already promoted.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "fm/host_device.h"
#include "fm/kernels/functors.h"
#include "fm/kernels/kernel.h"
#include "fm/random.h"
#include "fm/tensor.h"

namespace fm::kernels {

// dst = src element by element (same shape; any strides; dtype conversion).
extern Kernel<void(const Tensor& dst, const Tensor& src)> copy;
// Copies between devices (dst and src contiguous, same dtype).
extern Kernel<void(const Tensor& dst, const Tensor& src)> copy_across;
extern Kernel<void(const Tensor& dst, double value)> fill;

extern Kernel<void(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b)> binary;
// out is bool.
extern Kernel<void(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b)> compare;
extern Kernel<void(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1)> unary;
// out = cond ? a : b (cond bool).
extern Kernel<void(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b)> where;

enum class ReduceOp : uint8_t { sum, mean, var, max, min, argmax, argmin };
// x is contiguous [rows, n]; out is [rows] (i64 for argmax/argmin). `correction`
// is var's denominator offset (n - correction).
extern Kernel<void(ReduceOp op, const Tensor& out, const Tensor& x, int64_t correction)> reduce;

// out[j] = sum (or mean) over i of x[i, j], x contiguous [n, cols]: reduces
// leading dims (bias gradients) without transposing x first.
extern Kernel<void(const Tensor& out, const Tensor& x, bool mean)> reduce_leading;

// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b in [0, batch).
// Row-major; lda/ldb/ldc are row strides of the stored (untransposed) matrices.
struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;  // between batches, in elements
  double alpha = 1.0, beta = 0.0;
};
// a, b, c are the storages' base tensors; the offsets of a, b, c are honoured.
extern Kernel<void(const GemmArgs& args, const Tensor& a, const Tensor& b, const Tensor& c)> gemm;

enum class RandomKind : uint8_t { normal, uniform, randint };
// Fills contiguous `out` with draws of stream `state`: normal(mean=a, std=b),
// uniform[a, b) or integers in [a, b).
extern Kernel<void(const Tensor& out, RandomKind kind, PhiloxState state, double a, double b)> random;
// Counter blocks a draw of n values of dtype t uses (the Generator reserves them).
uint64_t random_blocks(int64_t n, DType t);

// ---- the random slot's checks and math, shared by the backends so that a
// stream gives the same numbers on either device

// Raises for a strided `out`, or a randint range wider than 2^32 into a
// tensor narrower than int64.
void check_random(const Tensor& out, RandomKind kind, double a, double b);

// x * y + z rounded once, spelled out so that both devices round alike
// whatever the compiler would contract.
FM_HOST_DEVICE double random_fma(double x, double y, double z) {
#if defined(__CUDA_ARCH__)
  return fma(x, y, z);
#else
  return std::fma(x, y, z);
#endif
}

// Elements of T per counter block: 2 for the 64-bit types, 4 otherwise.
template <class T>
inline constexpr int random_per_block = std::is_same_v<T, double> || std::is_same_v<T, int64_t> ? 2 : 4;

// Writes the elements of counter block `blk` of a draw of n values into out:
// element i takes lane i % k of block i / k (k = random_per_block<T>).
template <class T>
FM_HOST_DEVICE void random_block(T* out, int64_t n, int64_t blk, RandomKind kind, PhiloxState s, double a, double b) {
  constexpr bool wide = random_per_block<T> == 2;
  const double range = b - a;
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
  for (int l = 0; l < random_per_block<T>; ++l) {
    const int64_t i = blk * random_per_block<T> + l;
    if (i >= n) break;
    const double x = kind == RandomKind::normal    ? random_fma(b, v[l], a)
                     : kind == RandomKind::uniform ? random_fma(range, v[l], a)
                                                   : a + v[l];
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) out[i] = T(float(x));
    else out[i] = T(x);
  }
}

}  // namespace fm::kernels

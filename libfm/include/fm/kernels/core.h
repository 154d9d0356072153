#pragma once
// Kernel slots of the core ops. Conventions: outputs come first and are
// allocated by the caller (contiguous unless stated); inputs may be strided
// views (broadcast inputs have stride 0); dtypes are already promoted.
#include <cstdint>

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

}  // namespace fm::kernels

// The core kernel slots (declared in fm/kernels/core.h).
#include "fm/kernels/core.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&)> copy{"copy"};
constinit Kernel<void(const Tensor&, const Tensor&)> copy_across{"copy_across"};
constinit Kernel<void(const Tensor&, double)> fill{"fill"};
constinit Kernel<void(BinaryOp, const Tensor&, const Tensor&, const Tensor&)> binary{"binary"};
constinit Kernel<void(CompareOp, const Tensor&, const Tensor&, const Tensor&)> compare{"compare"};
constinit Kernel<void(UnaryOp, const Tensor&, const Tensor&, double, double)> unary{"unary"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&)> where{"where"};
constinit Kernel<void(ReduceOp, const Tensor&, const Tensor&, int64_t)> reduce{"reduce"};
constinit Kernel<void(const Tensor&, const Tensor&, bool)> reduce_leading{"reduce_leading"};
constinit Kernel<void(const GemmArgs&, const Tensor&, const Tensor&, const Tensor&)> gemm{"gemm"};
constinit Kernel<void(const Tensor&, RandomKind, PhiloxState, double, double)> random{"random"};

uint64_t random_blocks(int64_t n, DType t) {
  const int64_t per_block = t == DType::f64 || t == DType::i64 ? 2 : 4;
  return uint64_t((n + per_block - 1) / per_block);
}

void check_random(const Tensor& out, RandomKind kind, double a, double b) {
  if (!out.is_contiguous()) error("random: output must be contiguous");
  if (kind == RandomKind::randint && out.dtype() != DType::i64 && b - a > 4294967296.0)
    error("randint: range wider than 2^32 needs an int64 tensor");
}

}  // namespace fm::kernels

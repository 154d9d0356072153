// Batched strided GEMM on the CPU through Eigen (its blocked, vectorised,
// OpenMP-parallel kernel). Eigen stays inside this file.
#include <Eigen/Core>
#include <vector>

#include "dispatch.h"
#include "fm/kernels/core.h"

namespace fm::cpu {
namespace {

using kernels::GemmArgs;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Map = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

template <class T>
void gemm_one(const GemmArgs& g, const T* A, const T* B, T* C) {
  ConstMap<T> a(A, g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, Eigen::OuterStride<>(g.lda));
  ConstMap<T> b(B, g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, Eigen::OuterStride<>(g.ldb));
  Map<T> c(C, g.m, g.n, Eigen::OuterStride<>(g.ldc));
  const T alpha = T(g.alpha);
  if (g.beta == 0) c.setZero();
  else if (g.beta != 1) c *= T(g.beta);
  if (!g.trans_a && !g.trans_b) c.noalias() += alpha * a * b;
  else if (g.trans_a && !g.trans_b) c.noalias() += alpha * a.transpose() * b;
  else if (!g.trans_a && g.trans_b) c.noalias() += alpha * a * b.transpose();
  else c.noalias() += alpha * a.transpose() * b.transpose();
}

template <class T>
void gemm_batched(const GemmArgs& g, const T* A, const T* B, T* C) {
  // Many small products: one per thread (Eigen then runs single-threaded,
  // as it does not nest inside an OpenMP region). Large ones: Eigen's own
  // threading inside each product.
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k);
  const bool per_thread = g.batch > 1 && flops < 64.0 * 1024 * 1024 && flops * double(g.batch) > 1e6;
#pragma omp parallel for schedule(static) if (per_thread)
  for (int64_t i = 0; i < g.batch; ++i) gemm_one(g, A + i * g.stride_a, B + i * g.stride_b, C + i * g.stride_c);
}

// bf16/f16: widen the operands to f32, multiply, narrow the result.
template <class H>
void gemm_half(const GemmArgs& g, const H* A, const H* B, H* C) {
  auto widen = [](const H* src, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t bstride) {
    std::vector<float> dst(size_t(batch * rows * cols));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          dst[size_t((b * rows + r) * cols + c)] = float(src[b * bstride + r * ld + c]);
    return dst;
  };
  GemmArgs f = g;
  const int64_t ar = g.trans_a ? g.k : g.m, ac = g.trans_a ? g.m : g.k;
  const int64_t br = g.trans_b ? g.n : g.k, bc = g.trans_b ? g.k : g.n;
  auto a = widen(A, ar, ac, g.lda, g.batch, g.stride_a);
  auto b = widen(B, br, bc, g.ldb, g.batch, g.stride_b);
  auto c = widen(C, g.m, g.n, g.ldc, g.batch, g.stride_c);
  f.lda = ac, f.ldb = bc, f.ldc = g.n;
  f.stride_a = ar * ac, f.stride_b = br * bc, f.stride_c = g.m * g.n;
  gemm_batched<float>(f, a.data(), b.data(), c.data());
  for (int64_t bt = 0; bt < g.batch; ++bt)
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col)
        C[bt * g.stride_c + r * g.ldc + col] = H(c[size_t((bt * g.m + r) * g.n + col)]);
}

void gemm_kernel(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  if (a.dtype() != b.dtype() || a.dtype() != c.dtype())
    error("gemm: dtypes differ (", a.dtype(), ", ", b.dtype(), ", ", c.dtype(), ")");
  dispatch_float(a.dtype(), "gemm", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* A = static_cast<const T*>(a.data_ptr());
    const T* B = static_cast<const T*>(b.data_ptr());
    T* C = static_cast<T*>(c.data_ptr());
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) gemm_half(g, A, B, C);
    else gemm_batched(g, A, B, C);
  });
}

FM_REGISTER_KERNEL(kernels::gemm, DeviceType::cpu, gemm_kernel);

}  // namespace
}  // namespace fm::cpu

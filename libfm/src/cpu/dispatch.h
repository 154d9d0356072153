#pragma once
// Helpers shared by the CPU kernels: dtype dispatch and strided loops.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <type_traits>

#include "fm/dtype.h"
#include "fm/error.h"
#include "fm/tensor.h"

namespace fm::cpu {

template <class T> struct Tag { using type = T; };

// The type arithmetic on a stored type runs in: f32 for the half types.
template <class S> struct compute { using type = S; };
template <> struct compute<bf16> { using type = float; };
template <> struct compute<f16> { using type = float; };
template <class S> using compute_t = typename compute<S>::type;

// Calls f(Tag<T>{}) with T the C++ type of `t`.
template <class F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::bf16: return f(Tag<bf16>{});
    case DType::f16: return f(Tag<f16>{});
    case DType::i32: return f(Tag<int32_t>{});
    case DType::i64: return f(Tag<int64_t>{});
    case DType::u8: return f(Tag<uint8_t>{});
    case DType::b8: return f(Tag<bool>{});
  }
  error(op, ": unsupported dtype");
}

// Floating types only.
template <class F>
decltype(auto) dispatch_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::bf16: return f(Tag<bf16>{});
    case DType::f16: return f(Tag<f16>{});
    default: error(op, ": needs a floating dtype, got ", t);
  }
}

// Everything but bool (arithmetic).
template <class F>
decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {
  if (t == DType::b8) error(op, ": arithmetic on bool tensors is not supported");
  return dispatch_all(t, op, std::forward<F>(f));
}

// N operands of one shape with their own element strides. Dims of size 1 are
// dropped and dims that are contiguous in every operand merged, so most loops
// end up one flat run.
template <int N>
struct StridedPlan {
  int nd = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[N][kMaxDims] = {};

  StridedPlan(const Shape& shape, const std::array<const Tensor*, N>& ops) {
    for (int d = 0; d < shape.size(); ++d) {
      if (shape[d] == 1) continue;
      if (nd > 0) {
        bool merge = true;
        for (int k = 0; k < N; ++k)
          if (stride[k][nd - 1] != ops[k]->strides()[d] * shape[d]) merge = false;
        if (merge) {
          size[nd - 1] *= shape[d];
          for (int k = 0; k < N; ++k) stride[k][nd - 1] = ops[k]->strides()[d];
          continue;
        }
      }
      size[nd] = shape[d];
      for (int k = 0; k < N; ++k) stride[k][nd] = ops[k]->strides()[d];
      ++nd;
    }
    if (nd == 0) {  // a single element
      nd = 1;
      size[0] = 1;
      for (int k = 0; k < N; ++k) stride[k][0] = 1;
    }
  }
};

constexpr int64_t kParallelGrain = 32768;  // elements below which loops stay serial

// Calls f(offsets, n, inner_strides) for runs of the innermost dim, in
// parallel. Offsets and strides are in elements, one per operand.
template <int N, class F>
void for_each_run(const StridedPlan<N>& p, F&& f) {
  const int64_t inner = p.size[p.nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < p.nd - 1; ++d) outer *= p.size[d];
  std::array<int64_t, N> inner_stride;
  for (int k = 0; k < N; ++k) inner_stride[k] = p.stride[k][p.nd - 1];

  if (outer == 1) {  // one long run: split it into chunks
    const int64_t chunk = 8192;
    const int64_t nchunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (inner > kParallelGrain)
    for (int64_t c = 0; c < nchunks; ++c) {
      std::array<int64_t, N> off;
      for (int k = 0; k < N; ++k) off[k] = c * chunk * inner_stride[k];
      f(off.data(), std::min(chunk, inner - c * chunk), inner_stride.data());
    }
    return;
  }
#pragma omp parallel for schedule(static) if (outer * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o) {
    std::array<int64_t, N> off{};
    int64_t rem = o;
    for (int d = p.nd - 2; d >= 0; --d) {
      const int64_t i = rem % p.size[d];
      rem /= p.size[d];
      for (int k = 0; k < N; ++k) off[k] += i * p.stride[k][d];
    }
    f(off.data(), inner, inner_stride.data());
  }
}

}  // namespace fm::cpu

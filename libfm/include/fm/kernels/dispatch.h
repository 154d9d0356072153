#pragma once
// Shared by the backends: dtype dispatch and the strided-loop plan.
#include <array>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "fm/dtype.h"
#include "fm/error.h"
#include "fm/tensor.h"

namespace fm::kernels {

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

// Everything but bool (arithmetic). Its own switch, so no kernel is ever
// instantiated for bool.
template <class F>
decltype(auto) dispatch_numeric(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::bf16: return f(Tag<bf16>{});
    case DType::f16: return f(Tag<f16>{});
    case DType::i32: return f(Tag<int32_t>{});
    case DType::i64: return f(Tag<int64_t>{});
    case DType::u8: return f(Tag<uint8_t>{});
    default: error(op, ": arithmetic on ", t, " tensors is not supported");
  }
}

// N operands of one shape with their own element strides. Dims of size 1 are
// dropped and dims that are contiguous in every operand merged, so most loops
// end up one flat run. Plain data: it can be passed to a GPU kernel by value.
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

}  // namespace fm::kernels

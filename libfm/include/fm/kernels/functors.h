#pragma once
// The element-wise math of libfm, written once. The CPU loops and the CUDA
// kernels both instantiate these functors.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "fm/host_device.h"

namespace fm {

// X(name, expression in a and b). Arithmetic is computed in T (f32 for
// bf16/f16, which kernels widen first).
#define FM_BINARY_OPS(X)                                                     \
  X(add, a + b)                                                              \
  X(sub, a - b)                                                              \
  X(mul, a * b)                                                              \
  X(div, a / b)                                                              \
  X(pow, T(std::pow(a, b)))                                                  \
  X(maximum, (a != a || a > b) ? a : b) /* NaN propagates as in PyTorch */   \
  X(minimum, (a != a || a < b) ? a : b)                                      \
  /* backward helpers: a = upstream gradient, b = saved input or output */   \
  X(relu_backward, b > T(0) ? a : T(0))                                      \
  X(gelu_backward, a * gelu_grad(b))                                         \
  X(gelu_tanh_backward, a * gelu_tanh_grad(b))                               \
  X(silu_backward, a * silu_grad(b))                                         \
  X(tanh_backward, a * (T(1) - b * b))       /* b = tanh output */           \
  X(sigmoid_backward, a * b * (T(1) - b))    /* b = sigmoid output */

#define FM_COMPARE_OPS(X) \
  X(eq, a == b)           \
  X(ne, a != b)           \
  X(lt, a < b)            \
  X(le, a <= b)           \
  X(gt, a > b)            \
  X(ge, a >= b)

// X(name, expression in x and parameters p0, p1).
#define FM_UNARY_OPS(X)                                       \
  X(neg, -x)                                                  \
  X(exp, std::exp(x))                                         \
  X(log, std::log(x))                                         \
  X(sqrt, std::sqrt(x))                                       \
  X(rsqrt, T(1) / std::sqrt(x))                               \
  X(tanh, std::tanh(x))                                       \
  X(sigmoid, T(1) / (T(1) + std::exp(-x)))                    \
  X(relu, x > T(0) ? x : T(0))                                \
  X(gelu, T(0.5) * x * (T(1) + std::erf(x * T(M_SQRT1_2))))   \
  X(gelu_tanh, gelu_tanh_value(x))                            \
  X(silu, x / (T(1) + std::exp(-x)))                          \
  X(sin, std::sin(x))                                         \
  X(cos, std::cos(x))                                         \
  X(abs, x < T(0) ? -x : x)                                   \
  X(sign, T((x > T(0)) - (x < T(0))))                         \
  X(square, x * x)                                            \
  X(pow_scalar, T(std::pow(x, T(p0))))                        \
  X(clamp, x < T(p0) ? T(p0) : (x > T(p1) ? T(p1) : x))       \
  X(mul_scalar, x * T(p0))

template <class T>
FM_HOST_DEVICE T gelu_grad(T x) {
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(M_SQRT1_2)));
  const T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);  // 1/sqrt(2 pi)
  return cdf + x * pdf;
}
template <class T>
FM_HOST_DEVICE T gelu_tanh_value(T x) {
  const T k = T(0.7978845608028654);  // sqrt(2/pi)
  return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
}
template <class T>
FM_HOST_DEVICE T gelu_tanh_grad(T x) {
  const T k = T(0.7978845608028654);
  const T inner = k * (x + T(0.044715) * x * x * x);
  const T th = std::tanh(inner);
  return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * k * (T(1) + T(3 * 0.044715) * x * x);
}
template <class T>
FM_HOST_DEVICE T silu_grad(T x) {
  const T s = T(1) / (T(1) + std::exp(-x));
  return s * (T(1) + x * (T(1) - s));
}

enum class BinaryOp : uint8_t {
#define FM_ENUM_ENTRY(name, expr) name,
  FM_BINARY_OPS(FM_ENUM_ENTRY)
};
enum class CompareOp : uint8_t { FM_COMPARE_OPS(FM_ENUM_ENTRY) };
enum class UnaryOp : uint8_t { FM_UNARY_OPS(FM_ENUM_ENTRY) };
#undef FM_ENUM_ENTRY

// One functor type per op: BinaryFn<BinaryOp::add>{}(a, b).
template <BinaryOp op> struct BinaryFn;
template <CompareOp op> struct CompareFn;
template <UnaryOp op> struct UnaryFn;

#define FM_BINARY_FUNCTOR(name, expr)                                  \
  template <> struct BinaryFn<BinaryOp::name> {                       \
    template <class T> FM_HOST_DEVICE T operator()(T a, T b) const { return expr; } \
  };
FM_BINARY_OPS(FM_BINARY_FUNCTOR)
#undef FM_BINARY_FUNCTOR

#define FM_COMPARE_FUNCTOR(name, expr)                                     \
  template <> struct CompareFn<CompareOp::name> {                         \
    template <class T> FM_HOST_DEVICE bool operator()(T a, T b) const { return expr; } \
  };
FM_COMPARE_OPS(FM_COMPARE_FUNCTOR)
#undef FM_COMPARE_FUNCTOR

#define FM_UNARY_FUNCTOR(name, expr)                                   \
  template <> struct UnaryFn<UnaryOp::name> {                         \
    double p0 = 0, p1 = 0;                                            \
    template <class T> FM_HOST_DEVICE T operator()(T x) const { return expr; } \
  };
FM_UNARY_OPS(FM_UNARY_FUNCTOR)
#undef FM_UNARY_FUNCTOR

// Calls f(std::integral_constant<Op, op>{}) for a run-time op, so each
// backend picks its compile-time kernel instance in one line.
#define FM_VISIT_CASE(name, expr) \
  case Op::name: return f(std::integral_constant<Op, Op::name>{});
template <class F>
decltype(auto) visit_op(BinaryOp op, F&& f) {
  using Op = BinaryOp;
  switch (op) { FM_BINARY_OPS(FM_VISIT_CASE) }
  return f(std::integral_constant<Op, Op::add>{});  // unreachable: every enumerator has a case
}
template <class F>
decltype(auto) visit_op(CompareOp op, F&& f) {
  using Op = CompareOp;
  switch (op) { FM_COMPARE_OPS(FM_VISIT_CASE) }
  return f(std::integral_constant<Op, Op::eq>{});
}
template <class F>
decltype(auto) visit_op(UnaryOp op, F&& f) {
  using Op = UnaryOp;
  switch (op) { FM_UNARY_OPS(FM_VISIT_CASE) }
  return f(std::integral_constant<Op, Op::neg>{});
}
#undef FM_VISIT_CASE

}  // namespace fm

// Element-wise CUDA kernels: the same functors the CPU backend runs
// (fm/kernels/functors.h), over strided operands.
#include <type_traits>

#include "fm/kernels/core.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;
using kernels::StridedPlan;

template <class S, class R, class F>
__global__ void binary_kernel(StridedPlan<3> p, int64_t n, R* out, const S* a, const S* b, F f) {
  using C = compute_t<S>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    out[o.v[0]] = R(f(C(a[o.v[1]]), C(b[o.v[2]])));
  }
}

template <class S, class F>
__global__ void unary_kernel(StridedPlan<2> p, int64_t n, S* out, const S* x, F f) {
  using C = compute_t<S>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    out[o.v[0]] = S(f(C(x[o.v[1]])));
  }
}

// The typed functor as the flat kernels call it: operands converted to the
// compute type, the result to R.
template <class S, class R, class F>
struct Typed {
  F f;
  __device__ R operator()(S a) const { return R(f(compute_t<S>(a))); }
  __device__ R operator()(S a, S b) const { return R(f(compute_t<S>(a), compute_t<S>(b))); }
};

template <class S>
__global__ void where_kernel(StridedPlan<4> p, int64_t n, S* out, const bool* c, const S* a, const S* b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    out[o.v[0]] = c[o.v[1]] ? a[o.v[2]] : b[o.v[3]];
  }
}

// Integer tensors support the ops whose math stays in integers; the rest
// (pow, the activation gradients) are floating-point only, as their callers
// already promote.
constexpr bool integer_safe(BinaryOp op) {
  return op == BinaryOp::add || op == BinaryOp::sub || op == BinaryOp::mul || op == BinaryOp::maximum ||
         op == BinaryOp::minimum;
}
constexpr bool integer_safe(UnaryOp op) {
  return op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::square || op == UnaryOp::clamp;
}

template <BinaryOp op>
void binary_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  StridedPlan<3> plan(out.shape(), {&out, &a, &b});
  kernels::dispatch_numeric(out.dtype(), "binary", [&](auto tag) {
    using S = typename decltype(tag)::type;
    if constexpr (kFlatType<S>) {
      if (is_flat(plan, {{out.data_ptr(), sizeof(S)}, {a.data_ptr(), sizeof(S)}, {b.data_ptr(), sizeof(S)}})) {
        flat_map<<<blocks_for_packs(out.numel()), kThreads, 0, stream()>>>(
            out.numel(), Typed<S, S, BinaryFn<op>>{BinaryFn<op>{}}, static_cast<S*>(out.data_ptr()),
            static_cast<const S*>(a.data_ptr()), static_cast<const S*>(b.data_ptr()));
        check_launch();
        return;
      }
    }
    if constexpr (std::is_floating_point_v<compute_t<S>> || integer_safe(op)) {
      binary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(plan, out.numel(), static_cast<S*>(out.data_ptr()),
                                                           static_cast<const S*>(a.data_ptr()),
                                                           static_cast<const S*>(b.data_ptr()), BinaryFn<op>{});
      check_launch();
    } else {
      error("binary: op not supported on integer cuda tensors");
    }
  });
}

void binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { binary_typed<decltype(c)::value>(out, a, b); });
}

template <CompareOp op>
void compare_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  StridedPlan<3> plan(out.shape(), {&out, &a, &b});
  kernels::dispatch_all(a.dtype(), "compare", [&](auto tag) {
    using S = typename decltype(tag)::type;
    binary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(plan, out.numel(), static_cast<bool*>(out.data_ptr()),
                                                         static_cast<const S*>(a.data_ptr()),
                                                         static_cast<const S*>(b.data_ptr()), CompareFn<op>{});
    check_launch();
  });
}

void compare(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { compare_typed<decltype(c)::value>(out, a, b); });
}

template <UnaryOp op>
void unary_typed(const Tensor& out, const Tensor& x, double p0, double p1) {
  StridedPlan<2> plan(out.shape(), {&out, &x});
  kernels::dispatch_numeric(out.dtype(), "unary", [&](auto tag) {
    using S = typename decltype(tag)::type;
    if constexpr (kFlatType<S>) {
      if (is_flat(plan, {{out.data_ptr(), sizeof(S)}, {x.data_ptr(), sizeof(S)}})) {
        flat_map<<<blocks_for_packs(out.numel()), kThreads, 0, stream()>>>(
            out.numel(), Typed<S, S, UnaryFn<op>>{UnaryFn<op>{p0, p1}}, static_cast<S*>(out.data_ptr()),
            static_cast<const S*>(x.data_ptr()));
        check_launch();
        return;
      }
    }
    if constexpr (std::is_floating_point_v<compute_t<S>> || integer_safe(op)) {
      unary_kernel<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(plan, out.numel(), static_cast<S*>(out.data_ptr()),
                                                          static_cast<const S*>(x.data_ptr()), UnaryFn<op>{p0, p1});
      check_launch();
    } else {
      error("unary: op not supported on integer cuda tensors");
    }
  });
}

void unary(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { unary_typed<decltype(c)::value>(out, x, p0, p1); });
}

void where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  StridedPlan<4> plan(out.shape(), {&out, &cond, &a, &b});
  kernels::dispatch_all(out.dtype(), "where", [&](auto tag) {
    using S = typename decltype(tag)::type;
    where_kernel<<<blocks_for(out.numel()), kThreads, 0, stream()>>>(plan, out.numel(), static_cast<S*>(out.data_ptr()),
                                                        static_cast<const bool*>(cond.data_ptr()),
                                                        static_cast<const S*>(a.data_ptr()),
                                                        static_cast<const S*>(b.data_ptr()));
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::binary, DeviceType::cuda, binary);
FM_REGISTER_KERNEL(kernels::compare, DeviceType::cuda, compare);
FM_REGISTER_KERNEL(kernels::unary, DeviceType::cuda, unary);
FM_REGISTER_KERNEL(kernels::where, DeviceType::cuda, where);

}  // namespace
}  // namespace fm::cuda

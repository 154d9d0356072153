// Element-wise CPU kernels: the shared functors run over strided runs, with
// unit-stride and broadcast-scalar runs as separate (vectorisable) loops.
#include "dispatch.h"
#include "fm/kernels/core.h"
#include "gelu_cpu.h"

namespace fm::cpu {
namespace {

// out[i] = f(a[i], b[i]) over runs; S is the stored type, R the result type.
template <class S, class R, class F>
void binary_loop(const Tensor& out, const Tensor& a, const Tensor& b, F f) {
  using C = compute_t<S>;
  StridedPlan<3> plan(out.shape(), {&out, &a, &b});
  R* po = static_cast<R*>(out.data_ptr());
  const S* pa = static_cast<const S*>(a.data_ptr());
  const S* pb = static_cast<const S*>(b.data_ptr());
  for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
    R* o = po + off[0];
    const S* x = pa + off[1];
    const S* y = pb + off[2];
    if (st[0] == 1 && st[1] == 1 && st[2] == 1) {
      if constexpr (std::is_same_v<F, BinaryFn<BinaryOp::gelu_backward>> && std::is_same_v<S, float>)
        gelu_backward_f32(x, y, o, n);
      else if constexpr (std::is_same_v<F, BinaryFn<BinaryOp::gelu_tanh_backward>> && std::is_same_v<S, float>)
        gelu_tanh_backward_f32(x, y, o, n);
      else
        for (int64_t i = 0; i < n; ++i) o[i] = R(f(C(x[i]), C(y[i])));
    } else if (st[0] == 1 && st[1] == 1 && st[2] == 0) {
      const C yv = C(y[0]);
      for (int64_t i = 0; i < n; ++i) o[i] = R(f(C(x[i]), yv));
    } else if (st[0] == 1 && st[1] == 0 && st[2] == 1) {
      const C xv = C(x[0]);
      for (int64_t i = 0; i < n; ++i) o[i] = R(f(xv, C(y[i])));
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * st[0]] = R(f(C(x[i * st[1]]), C(y[i * st[2]])));
    }
  });
}

template <BinaryOp op>
void binary_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch_numeric(out.dtype(), "binary", [&](auto tag) {
    using S = typename decltype(tag)::type;
    binary_loop<S, S>(out, a, b, BinaryFn<op>{});
  });
}

void binary_kernel(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { binary_typed<decltype(c)::value>(out, a, b); });
}

template <CompareOp op>
void compare_typed(const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch_all(a.dtype(), "compare", [&](auto tag) {
    using S = typename decltype(tag)::type;
    binary_loop<S, bool>(out, a, b, CompareFn<op>{});
  });
}

void compare_kernel(CompareOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { compare_typed<decltype(c)::value>(out, a, b); });
}

template <UnaryOp op>
void unary_typed(const Tensor& out, const Tensor& x, double p0, double p1) {
  dispatch_numeric(out.dtype(), "unary", [&](auto tag) {
    using S = typename decltype(tag)::type;
    using C = compute_t<S>;
    UnaryFn<op> f{p0, p1};
    StridedPlan<2> plan(out.shape(), {&out, &x});
    S* po = static_cast<S*>(out.data_ptr());
    const S* px = static_cast<const S*>(x.data_ptr());
    for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
      S* o = po + off[0];
      const S* i = px + off[1];
      if (st[0] == 1 && st[1] == 1) {
        if constexpr (op == UnaryOp::gelu && std::is_same_v<S, float>)
          gelu_f32(i, o, n);
        else if constexpr (op == UnaryOp::gelu_tanh && std::is_same_v<S, float>)
          gelu_tanh_f32(i, o, n);
        else
          for (int64_t j = 0; j < n; ++j) o[j] = S(f(C(i[j])));
      } else {
        for (int64_t j = 0; j < n; ++j) o[j * st[0]] = S(f(C(i[j * st[1]])));
      }
    });
  });
}

void unary_kernel(UnaryOp op, const Tensor& out, const Tensor& x, double p0, double p1) {
  if (out.numel() == 0) return;
  visit_op(op, [&](auto c) { unary_typed<decltype(c)::value>(out, x, p0, p1); });
}

void where_kernel(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (out.numel() == 0) return;
  StridedPlan<4> plan(out.shape(), {&out, &cond, &a, &b});
  dispatch_all(out.dtype(), "where", [&](auto tag) {
    using S = typename decltype(tag)::type;
    S* po = static_cast<S*>(out.data_ptr());
    const bool* pc = static_cast<const bool*>(cond.data_ptr());
    const S* pa = static_cast<const S*>(a.data_ptr());
    const S* pb = static_cast<const S*>(b.data_ptr());
    for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* st) {
      for (int64_t i = 0; i < n; ++i)
        po[off[0] + i * st[0]] = pc[off[1] + i * st[1]] ? pa[off[2] + i * st[2]] : pb[off[3] + i * st[3]];
    });
  });
}

FM_REGISTER_KERNEL(kernels::binary, DeviceType::cpu, binary_kernel);
FM_REGISTER_KERNEL(kernels::compare, DeviceType::cpu, compare_kernel);
FM_REGISTER_KERNEL(kernels::unary, DeviceType::cpu, unary_kernel);
FM_REGISTER_KERNEL(kernels::where, DeviceType::cpu, where_kernel);

}  // namespace
}  // namespace fm::cpu

// softmax, log_softmax, layer_norm and rms_norm: shape checks, the fused
// kernels and their hand-written backward. group_norm and normalize are
// compositions of differentiable ops.
#include "fm/ops/norm.h"

#include <utility>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/norm.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

void check_floating(const char* op, const Tensor& x) {
  if (!x.defined()) error(op, ": input is undefined");
  if (!is_floating(x.dtype())) error(op, ": needs a floating tensor, got ", x.dtype(), " ", x.shape());
}

// The dtype of saved statistics: f64 for f64 data, f32 otherwise.
DType stat_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// x as a contiguous [rows, n] matrix of dtype t (no graph).
Tensor as_rows(const Tensor& x, int64_t n, DType t) {
  NoGradGuard ng;
  Tensor c = (x.dtype() == t ? x : x.to(t)).contiguous();
  return c.view({n == 0 ? 0 : c.numel() / n, n});
}

// ---- softmax over one dim: moved last, run over rows, moved back.

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  check_floating(name, x);
  if (x.dim() == 0) return softmax_impl(x.view({1}), 0, log).view({});
  const int d = wrap_dim(dim, x.dim(), name);
  const int last = x.dim() - 1;
  const int64_t n = x.size(d);
  Shape t_shape = x.shape();  // the shape with dim d moved last
  std::swap(t_shape[d], t_shape[last]);
  Tensor y2, out;
  {
    NoGradGuard ng;
    Tensor x2 = as_rows(d == last ? x : x.transpose(d, last), n, x.dtype());
    y2 = make_tensor(x2.shape(), x.dtype(), x.device());
    kernels::softmax_forward(x.device(), y2, x2, log);
    Tensor y = y2.view(t_shape);
    out = d == last ? y : y.transpose(d, last).contiguous();
  }
  if (any_requires_grad({x})) {
    Tensor saved = y2;
    record(name, out, {x}, [saved, t_shape, d, last, n, log](const Tensor& g, const Node&) {
      Tensor gt = d == last ? g : g.transpose(d, last);
      Tensor g2 = as_rows(gt, n, saved.dtype());
      Tensor dx = make_tensor(saved.shape(), saved.dtype(), saved.device());
      kernels::softmax_backward(saved.device(), dx, g2, saved, log);
      Tensor r = dx.view(t_shape);
      return Grads{d == last ? r : r.transpose(d, last).contiguous()};
    });
  }
  return out;
}

// ---- layer_norm and rms_norm over trailing dims

struct NormPlan {
  int64_t rows = 0, n = 0;
};

NormPlan plan_norm(const char* op, const Tensor& x, const Shape& normalized_shape, const Tensor& weight,
                   const Tensor& bias) {
  check_floating(op, x);
  const int k = normalized_shape.size();
  if (k == 0) error(op, ": normalized_shape must have at least one dim");
  bool ends_with = x.dim() >= k;
  for (int i = 0; ends_with && i < k; ++i)
    ends_with = x.shape()[x.dim() - k + i] == normalized_shape[i];
  if (!ends_with) error(op, ": input ", x.shape(), " does not end with normalized_shape ", normalized_shape);
  for (const auto& [what, p] : {std::pair{"weight", &weight}, std::pair{"bias", &bias}}) {
    if (!p->defined()) continue;
    if (p->shape() != normalized_shape)
      error(op, ": ", what, " ", p->shape(), " differs from normalized_shape ", normalized_shape);
    if (p->device() != x.device())
      error(op, ": ", what, " on ", p->device().str(), " but input on ", x.device().str());
    check_floating(op, *p);
  }
  NormPlan p;
  p.n = normalized_shape.numel();
  p.rows = p.n == 0 ? 0 : x.numel() / p.n;
  return p;
}

// weight or bias as a contiguous [n] tensor of dtype t, or undefined.
Tensor as_param(const Tensor& p, DType t) {
  if (!p.defined()) return p;
  NoGradGuard ng;
  return (p.dtype() == t ? p : p.to(t)).contiguous().view({p.numel()});
}

// A parameter gradient computed as [n] in the input's dtype, returned in p's shape and dtype.
Tensor param_grad(const Tensor& g, const Tensor& p) {
  Tensor r = g.view(p.shape());
  return r.dtype() == p.dtype() ? r : r.to(p.dtype());
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, const Tensor& bias,
                  double eps) {
  const NormPlan p = plan_norm("layer_norm", x, normalized_shape, weight, bias);
  const DType t = x.dtype();
  Tensor x2 = as_rows(x, p.n, t), w = as_param(weight, t), b = as_param(bias, t);
  Tensor y = make_tensor(x.shape(), t, x.device());
  Tensor mean = make_tensor({p.rows}, stat_dtype(t), x.device());
  Tensor rstd = make_tensor({p.rows}, stat_dtype(t), x.device());
  kernels::layer_norm_forward(x.device(), y.view({p.rows, p.n}), mean, rstd, x2, w, b, eps);
  if (any_requires_grad({x, weight, bias})) {
    const Shape x_shape = x.shape();
    record("layer_norm", y, {x, weight, bias},
           [x2, w, mean, rstd, weight, bias, x_shape, p](const Tensor& g, const Node& node) {
             Tensor g2 = as_rows(g, p.n, x2.dtype());
             Tensor dx, dw, db;
             if (node.needs_input_grad(0)) dx = make_tensor(x2.shape(), x2.dtype(), x2.device());
             if (node.needs_input_grad(1)) dw = make_tensor({p.n}, x2.dtype(), x2.device());
             if (node.needs_input_grad(2)) db = make_tensor({p.n}, x2.dtype(), x2.device());
             kernels::layer_norm_backward(x2.device(), dx, dw, db, g2, x2, mean, rstd, w);
             return Grads{dx.defined() ? dx.view(x_shape) : dx, dw.defined() ? param_grad(dw, weight) : dw,
                          db.defined() ? param_grad(db, bias) : db};
           });
  }
  return y;
}

Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight, double eps) {
  const NormPlan p = plan_norm("rms_norm", x, normalized_shape, weight, Tensor());
  const DType t = x.dtype();
  Tensor x2 = as_rows(x, p.n, t), w = as_param(weight, t);
  Tensor y = make_tensor(x.shape(), t, x.device());
  Tensor rstd = make_tensor({p.rows}, stat_dtype(t), x.device());
  kernels::rms_norm_forward(x.device(), y.view({p.rows, p.n}), rstd, x2, w, eps);
  if (any_requires_grad({x, weight})) {
    const Shape x_shape = x.shape();
    record("rms_norm", y, {x, weight}, [x2, w, rstd, weight, x_shape, p](const Tensor& g, const Node& node) {
      Tensor g2 = as_rows(g, p.n, x2.dtype());
      Tensor dx, dw;
      if (node.needs_input_grad(0)) dx = make_tensor(x2.shape(), x2.dtype(), x2.device());
      if (node.needs_input_grad(1)) dw = make_tensor({p.n}, x2.dtype(), x2.device());
      kernels::rms_norm_backward(x2.device(), dx, dw, g2, x2, rstd, w);
      return Grads{dx.defined() ? dx.view(x_shape) : dx, dw.defined() ? param_grad(dw, weight) : dw};
    });
  }
  return y;
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight, const Tensor& bias, double eps) {
  check_floating("group_norm", x);
  if (x.dim() < 2) error("group_norm: input ", x.shape(), " must be [N, C, *]");
  const int64_t N = x.size(0), C = x.size(1);
  if (num_groups <= 0 || C % num_groups != 0)
    error("group_norm: ", C, " channels of input ", x.shape(), " do not split into ", num_groups, " groups");
  for (const auto& [what, p] : {std::pair{"weight", &weight}, std::pair{"bias", &bias}})
    if (p->defined() && p->shape() != Shape{C})
      error("group_norm: ", what, " ", p->shape(), " does not match the ", C, " channels of input ", x.shape());
  // Each (sample, group) is one row of layer_norm without affine; then the
  // per-channel affine, broadcast over the spatial dims.
  const int64_t group_size = N == 0 ? 0 : x.numel() / (N * num_groups);
  Tensor y = layer_norm(x.reshape({N, num_groups, group_size}), {group_size}, Tensor(), Tensor(), eps)
                 .reshape(x.shape());
  Shape channel_shape{C};
  for (int i = 2; i < x.dim(); ++i) channel_shape.push_back(1);
  if (weight.defined()) y = y * weight.to(x.dtype()).reshape(channel_shape);
  if (bias.defined()) y = y + bias.to(x.dtype()).reshape(channel_shape);
  return y;
}

Tensor normalize(const Tensor& x, int64_t dim, double eps) {
  check_floating("normalize", x);
  const int d = wrap_dim(dim, x.dim(), "normalize");
  // max(||x||, eps) as sqrt(max(||x||^2, eps^2)): the same value, and a zero
  // row gets a zero gradient instead of 0 * inf.
  return x * rsqrt(clamp_min(sum(square(x), {d}, true), eps * eps));
}

}  // namespace fm

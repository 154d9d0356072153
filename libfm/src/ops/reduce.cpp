// Reductions: the reduced dims are moved last so each backend reduces the
// rows of a contiguous [rows, n] matrix.
#include "fm/ops/reduce.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using kernels::ReduceOp;
using Grads = std::vector<Tensor>;

struct Plan {
  std::vector<bool> reduced;  // per input dim
  Shape out_shape;            // without keepdim
  Shape keep_shape;           // with keepdim (reduced dims as 1)
  int64_t n = 1;              // elements per output
};

Plan plan(const Tensor& x, const Shape& dims, const char* op) {
  Plan p;
  const int nd = x.dim();
  p.reduced.assign(size_t(nd), dims.empty());
  for (int64_t d : dims) {
    const int w = wrap_dim(d, nd, op);
    if (p.reduced[size_t(w)]) error(op, ": dim ", w, " listed twice in ", dims);
    p.reduced[size_t(w)] = true;
  }
  for (int i = 0; i < nd; ++i) {
    if (p.reduced[size_t(i)]) {
      p.n *= x.shape()[i];
      p.keep_shape.push_back(1);
    } else {
      p.out_shape.push_back(x.shape()[i]);
      p.keep_shape.push_back(x.shape()[i]);
    }
  }
  return p;
}

// Runs the reduction kernel; returns the result with keepdim's shape.
Tensor reduce_raw(ReduceOp op, const Tensor& x, const Plan& p, DType out_dtype, int64_t correction, const char* name) {
  Shape perm;
  for (int i = 0; i < x.dim(); ++i)
    if (!p.reduced[size_t(i)]) perm.push_back(i);
  for (int i = 0; i < x.dim(); ++i)
    if (p.reduced[size_t(i)]) perm.push_back(i);
  NoGradGuard ng;
  const int64_t rows = p.out_shape.numel();
  // Sums over leading dims of a contiguous tensor: no transposing copy.
  int lead = 0;
  while (lead < x.dim() && p.reduced[size_t(lead)]) ++lead;
  bool leading_only = lead > 0 && x.is_contiguous() && p.n > 0;
  for (int i = lead; i < x.dim(); ++i) leading_only = leading_only && !p.reduced[size_t(i)];
  if (leading_only && (op == ReduceOp::sum || op == ReduceOp::mean) && rows > 1) {
    Tensor out = make_tensor({rows}, out_dtype, x.device());
    kernels::reduce_leading(x.device(), out, x.view({p.n, rows}), op == ReduceOp::mean);
    return out.view(p.keep_shape);
  }
  if (p.n == 0 && (op == ReduceOp::max || op == ReduceOp::min || op == ReduceOp::argmax || op == ReduceOp::argmin))
    error(name, ": cannot reduce over an empty dim of a tensor of shape ", x.shape());
  Tensor rowwise = x.permute(perm).contiguous().view({rows, p.n});
  Tensor out = make_tensor({rows}, out_dtype, x.device());
  kernels::reduce(x.device(), op, out, rowwise, correction);
  return out.view(p.keep_shape);
}

Tensor finish(const Tensor& kept, const Plan& p, bool keepdim) { return keepdim ? kept : kept.view(p.out_shape); }

DType sum_dtype(DType t) { return is_floating(t) ? t : DType::i64; }

// Gradient g of a reduction (keepdim or not) broadcast back to x's shape.
Tensor expand_grad(const Tensor& g, const Plan& p, const Shape& in_shape) {
  return g.reshape(p.keep_shape).expand(in_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const Shape& dims, bool keepdim) {
  Plan p = plan(x, dims, "sum");
  Tensor out = finish(reduce_raw(ReduceOp::sum, x, p, sum_dtype(x.dtype()), 0, "sum"), p, keepdim);
  if (any_requires_grad({x})) {
    const Shape in = x.shape();
    record("sum", out, {x}, [p, in](const Tensor& g, const Node&) { return Grads{expand_grad(g, p, in)}; });
  }
  return out;
}

Tensor mean(const Tensor& x, const Shape& dims, bool keepdim) {
  if (!is_floating(x.dtype())) error("mean: needs a floating tensor, got ", x.dtype());
  Plan p = plan(x, dims, "mean");
  Tensor out = finish(reduce_raw(ReduceOp::mean, x, p, x.dtype(), 0, "mean"), p, keepdim);
  if (any_requires_grad({x})) {
    const Shape in = x.shape();
    record("mean", out, {x}, [p, in](const Tensor& g, const Node&) {
      return Grads{expand_grad(g, p, in) * (1.0 / double(p.n))};
    });
  }
  return out;
}

Tensor var(const Tensor& x, const Shape& dims, int64_t correction, bool keepdim) {
  if (!is_floating(x.dtype())) error("var: needs a floating tensor, got ", x.dtype());
  Plan p = plan(x, dims, "var");
  Tensor out = finish(reduce_raw(ReduceOp::var, x, p, x.dtype(), correction, "var"), p, keepdim);
  if (any_requires_grad({x})) {
    const Shape in = x.shape();
    record("var", out, {x}, [p, in, x, correction](const Tensor& g, const Node&) {
      Tensor mu = mean(x, [&] {
        Shape d;
        for (int i = 0; i < x.dim(); ++i)
          if (p.reduced[size_t(i)]) d.push_back(i);
        return d;
      }(), true);
      return Grads{expand_grad(g, p, in) * (x - mu) * (2.0 / double(p.n - correction))};
    });
  }
  return out;
}

namespace {
// Gradient of max/min: shared evenly between the elements equal to the result.
Tensor extreme_grad(const Tensor& g, const Tensor& x, const Tensor& result_kept, const Plan& p) {
  Tensor hit = eq(x, result_kept).to(g.dtype());
  Shape d;
  for (int i = 0; i < x.dim(); ++i)
    if (p.reduced[size_t(i)]) d.push_back(i);
  Tensor count = sum(hit, d, true);
  return expand_grad(g, p, x.shape()) * hit / count;
}

Tensor extreme(ReduceOp op, const char* name, const Tensor& x, const Shape& dims, bool keepdim) {
  Plan p = plan(x, dims, name);
  Tensor kept = reduce_raw(op, x, p, x.dtype(), 0, name);
  Tensor out = finish(kept, p, keepdim);
  if (any_requires_grad({x})) {
    Tensor saved = kept.detach();
    record(name, out, {x}, [x, saved, p](const Tensor& g, const Node&) { return Grads{extreme_grad(g, x, saved, p)}; });
  }
  return out;
}

Tensor arg_extreme(ReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  Plan p = plan(x, {dim}, name);
  return finish(reduce_raw(op, x, p, DType::i64, 0, name), p, keepdim);
}
}  // namespace

Tensor amax(const Tensor& x, const Shape& dims, bool keepdim) { return extreme(ReduceOp::max, "amax", x, dims, keepdim); }
Tensor amin(const Tensor& x, const Shape& dims, bool keepdim) { return extreme(ReduceOp::min, "amin", x, dims, keepdim); }
Tensor max(const Tensor& x) { return amax(x, {}, false); }
Tensor min(const Tensor& x) { return amin(x, {}, false); }

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return {amax(x, {dim}, keepdim), arg_extreme(ReduceOp::argmax, "argmax", x, dim, keepdim)};
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return {amin(x, {dim}, keepdim), arg_extreme(ReduceOp::argmin, "argmin", x, dim, keepdim)};
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(ReduceOp::argmax, "argmax", x, dim, keepdim);
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extreme(ReduceOp::argmin, "argmin", x, dim, keepdim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int lead = x.dim() - shape.size();
  if (lead < 0) error("sum_to: cannot sum ", x.shape(), " to the larger shape ", shape);
  Shape dims;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) dims.push_back(i);
    else if (shape[i - lead] == 1 && x.shape()[i] != 1) dims.push_back(i);
    else if (shape[i - lead] != x.shape()[i]) error("sum_to: ", x.shape(), " does not broadcast from ", shape);
  }
  if (dims.empty()) return x.view(shape);
  return sum(x, dims, true).view(shape);
}

}  // namespace fm

// Gathers and scatters by integer indices: shape rules, index checks and the
// autograd formulas. The loops are the backends' (fm/kernels/index.h).
#include "fm/ops/index.h"

#include <string>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/kernels/index.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

void check_index_dtype(const char* op, const Tensor& index) {
  if (index.dtype() != DType::i32 && index.dtype() != DType::i64)
    error(op, ": indices must be int32 or int64, got ", index.dtype());
}

void check_same_device(const char* op, const Tensor& x, const Tensor& index) {
  if (x.device() != index.device())
    error(op, ": tensor on ", x.device().str(), " but indices on ", index.device().str());
}

// Throws unless every index is in [0, size); `what` names the indexed range.
void check_range(const char* op, const Tensor& index, int64_t size, const std::string& what) {
  const kernels::IndexBounds b = kernels::index_bounds(index.device(), index);
  if (b.min > b.max) return;  // no indices
  if (b.min < 0 || b.max >= size) error(op, ": index ", b.min < 0 ? b.min : b.max, " out of range for ", what);
}

std::string dim_of_size(int d, int64_t size) { return "dim " + std::to_string(d) + " of size " + std::to_string(size); }

int checked_dim(const char* op, const Tensor& x, int64_t dim) {
  if (x.dim() == 0) error(op, ": needs a tensor with at least one dim, got a scalar");
  return wrap_dim(dim, x.dim(), op);
}

// The gradient of index_select: g's rows added into zeros at `index`.
Tensor index_add_into_zeros(const Shape& shape, int d, const Tensor& index, const Tensor& g) {
  Tensor gx = zeros(shape, g.options());
  kernels::index_add(g.device(), gx, d, index, g);
  return gx;
}

// Gathers of x's rows without recording a graph; index is 1-D.
Tensor index_select_raw(const Tensor& x, int d, const Tensor& index) {
  Shape s = x.shape();
  s[d] = index.numel();
  Tensor out = make_tensor(s, x.dtype(), x.device());
  kernels::index_select(x.device(), out, x, d, index);
  return out;
}

// The part of t that `index` covers: its first index.size(k) entries in each dim k.
Tensor covered(const Tensor& t, const Tensor& index) {
  Tensor v = t;
  for (int k = 0; k < t.dim(); ++k) v = v.narrow(k, 0, index.size(k));
  return v;
}

// Index must be no larger than `other` in every dim (but `skip`, when >= 0).
void check_fits(const char* op, const Tensor& index, const Tensor& other, const char* other_name, int skip) {
  for (int k = 0; k < index.dim(); ++k)
    if (k != skip && index.size(k) > other.size(k))
      error(op, ": index of shape ", index.shape(), " is larger than ", other_name, " of shape ", other.shape(),
            " in dim ", k);
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const int d = checked_dim("index_select", x, dim);
  check_index_dtype("index_select", index);
  check_same_device("index_select", x, index);
  if (index.dim() > 1) error("index_select: index must be 0-D or 1-D, got shape ", index.shape());
  const Tensor idx = index.reshape({index.numel()});
  check_range("index_select", idx, x.size(d), dim_of_size(d, x.size(d)));
  Tensor out = index_select_raw(x, d, idx);
  if (any_requires_grad({x})) {
    const Shape in = x.shape();
    record("index_select", out, {x}, [in, d, idx](const Tensor& g, const Node&) {
      return Grads{index_add_into_zeros(in, d, idx, g)};
    });
  }
  return out;
}

Tensor embedding(const Tensor& ids, const Tensor& weight, int64_t padding_idx) {
  check_index_dtype("embedding", ids);
  check_same_device("embedding", weight, ids);
  if (weight.dim() != 2) error("embedding: weight must be 2-D [num, dim], got shape ", weight.shape());
  const int64_t num = weight.size(0), width = weight.size(1);
  if (padding_idx >= num)
    error("embedding: padding_idx ", padding_idx, " out of range for a weight of ", num, " rows");
  const Tensor flat = ids.reshape({ids.numel()});
  check_range("embedding", flat, num, "a weight of " + std::to_string(num) + " rows");
  Shape out_shape = ids.shape();
  out_shape.push_back(width);
  Tensor out = index_select_raw(weight, 0, flat).view(out_shape);
  if (any_requires_grad({weight})) {
    const Shape ws = weight.shape();
    record("embedding", out, {weight}, [ws, flat, width, padding_idx](const Tensor& g, const Node&) {
      Tensor gw = index_add_into_zeros(ws, 0, flat, g.reshape({flat.numel(), width}));
      if (padding_idx >= 0) gw.select(0, padding_idx).zero_();
      return Grads{gw};
    });
  }
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const int d = checked_dim("gather", x, dim);
  check_index_dtype("gather", index);
  check_same_device("gather", x, index);
  if (index.dim() != x.dim())
    error("gather: index of shape ", index.shape(), " and input of shape ", x.shape(), " differ in dims");
  check_fits("gather", index, x, "the input", d);
  check_range("gather", index, x.size(d), dim_of_size(d, x.size(d)));
  Tensor out = make_tensor(index.shape(), x.dtype(), x.device());
  kernels::gather(x.device(), out, x, d, index);
  if (any_requires_grad({x})) {
    const Shape in = x.shape();
    record("gather", out, {x}, [in, d, index](const Tensor& g, const Node&) {
      Tensor gx = zeros(in, g.options());
      kernels::scatter_add(g.device(), gx, d, index, g);
      return Grads{gx};
    });
  }
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const int d = checked_dim("scatter_add", x, dim);
  check_index_dtype("scatter_add", index);
  check_same_device("scatter_add", x, index);
  check_same_device("scatter_add", x, src);
  if (src.dtype() != x.dtype())
    error("scatter_add: src is ", src.dtype(), " but the input is ", x.dtype(), " (they must match)");
  if (index.dim() != x.dim() || src.dim() != x.dim())
    error("scatter_add: input ", x.shape(), ", index ", index.shape(), " and src ", src.shape(),
          " must have the same number of dims");
  check_fits("scatter_add", index, src, "src", -1);
  check_fits("scatter_add", index, x, "the input", d);
  check_range("scatter_add", index, x.size(d), dim_of_size(d, x.size(d)));

  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  {
    NoGradGuard ng;
    kernels::copy(x.device(), out, x);
    kernels::scatter_add(x.device(), out, d, index, covered(src, index));  // src beyond index is unused
  }
  if (any_requires_grad({x, src})) {
    const Shape src_shape = src.shape();
    record("scatter_add", out, {x, src}, [d, index, src_shape](const Tensor& g, const Node& n) {
      Tensor gsrc;
      if (n.needs_input_grad(1)) {
        gsrc = zeros(src_shape, g.options());
        kernels::gather(g.device(), covered(gsrc, index), g, d, index);
      }
      return Grads{n.needs_input_grad(0) ? g : Tensor(), gsrc};
    });
  }
  return out;
}

}  // namespace fm

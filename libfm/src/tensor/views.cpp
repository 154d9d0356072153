// View ops: new shape and strides over the same storage, each differentiable.
#include <algorithm>
#include <numeric>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

Shape infer_size(const Shape& requested, int64_t numel, const char* op, const Shape& from) {
  Shape out = requested;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer >= 0) error(op, ": only one dim can be -1 in ", requested);
      infer = i;
    } else if (out[i] < 0) {
      error(op, ": invalid size ", out[i], " in ", requested);
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0) error(op, ": cannot view ", from, " as ", requested);
    out[infer] = numel / known;
  }
  if (out.numel() != numel) error(op, ": shape ", requested, " is invalid for a tensor of shape ", from, " (", numel, " elements)");
  return out;
}

// Strides that view (sizes, strides) as new_sizes, or false when the memory
// layout does not allow it (same rule as PyTorch's view).
bool view_strides(const Shape& sizes, const Shape& strides, const Shape& new_sizes, Shape* out) {
  out->resize(new_sizes.size());
  if (sizes.numel() == 0 || sizes.empty()) {
    *out = contiguous_strides(new_sizes);
    return true;
  }
  int view_d = new_sizes.size() - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int tensor_d = sizes.size() - 1; tensor_d >= 0; --tensor_d) {
    tensor_numel *= sizes[tensor_d];
    if (tensor_d == 0 ||
        (sizes[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_sizes[view_d] == 1)) {
        (*out)[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_sizes[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (tensor_d > 0) {
        chunk_base_stride = strides[tensor_d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

Tensor reshape_backward_to(const Tensor& g, const Shape& shape) { return g.reshape(shape); }

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape s = infer_size(requested, numel(), "view", shape());
  Shape st;
  if (!view_strides(shape(), strides(), s, &st))
    error("view: cannot view ", shape(), " with strides ", strides(), " as ", s,
          " without a copy (use reshape)");
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this})) {
    const Shape in = shape();
    record("view", out, {*this}, [in](const Tensor& g, const Node&) { return std::vector<Tensor>{reshape_backward_to(g, in)}; });
  }
  return out;
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape s = infer_size(requested, numel(), "reshape", shape());
  Shape st;
  if (view_strides(shape(), strides(), s, &st)) return view(s);
  return clone().view(s);
}

Tensor Tensor::permute(const Shape& dims) const {
  const int n = dim();
  if (dims.size() != n) error("permute: ", dims.size(), " dims given for a tensor of ", n, " dims");
  Shape s, st, inverse;
  inverse.resize(n, -1);
  for (int i = 0; i < n; ++i) {
    const int d = wrap_dim(dims[i], n, "permute");
    if (inverse[d] != -1) error("permute: dim ", d, " repeated in ", dims);
    inverse[d] = i;
    s.push_back(shape()[d]);
    st.push_back(strides()[d]);
  }
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this}))
    record("permute", out, {*this}, [inverse](const Tensor& g, const Node&) { return std::vector<Tensor>{g.permute(inverse)}; });
  return out;
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int n = dim();
  if (n < 2 && d0 == -2 && d1 == -1) return *this;  // t() of a vector
  const int a = wrap_dim(d0, n, "transpose"), b = wrap_dim(d1, n, "transpose");
  Shape perm;
  for (int i = 0; i < n; ++i) perm.push_back(i);
  std::swap(perm[a], perm[b]);
  return permute(perm);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  const int dd = wrap_dim(d, dim(), "slice");
  const int64_t n = shape()[dd];
  if (step <= 0) error("slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape(), st = strides();
  s[dd] = (end - start + step - 1) / step;
  st[dd] *= step;
  Tensor out = make_view(*this, s, st, storage_offset() + start * strides()[dd]);
  if (any_requires_grad({*this})) {
    const Shape in = shape();
    const DType t = dtype();
    record("slice", out, {*this}, [in, t, dd, start, end, step](const Tensor& g, const Node&) {
      Tensor gi = zeros(in, TensorOptions(t).device(g.device()));
      gi.slice(dd, start, end, step).copy_(g);
      return std::vector<Tensor>{gi};
    });
  }
  return out;
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  const int dd = wrap_dim(d, dim(), "narrow");
  const int64_t n = shape()[dd];
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start + length > n)
    error("narrow: range [", start, ", ", start + length, ") outside dim ", dd, " of size ", n, " of ", shape());
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  const int dd = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[dd];
  if (index < -n || index >= n) error("select: index ", index, " out of range for dim ", dd, " of size ", n);
  if (index < 0) index += n;
  return narrow(dd, index, 1).squeeze(dd);
}

Tensor Tensor::expand(const Shape& requested) const {
  const int n = requested.size();
  if (n < dim()) error("expand: cannot expand ", shape(), " to fewer dims ", requested);
  Shape s, st;
  for (int i = 0; i < n; ++i) {
    const int j = i - (n - dim());
    const int64_t have = j >= 0 ? shape()[j] : 1;
    int64_t want = requested[i] == -1 ? have : requested[i];
    if (j < 0 && requested[i] == -1) error("expand: -1 is not allowed for the new leading dim ", i);
    if (have != want && have != 1) error("expand: cannot expand ", shape(), " to ", requested, " (dim ", i, ")");
    s.push_back(want);
    st.push_back(j >= 0 && have == want ? strides()[j] : 0);
  }
  if (s == shape()) return *this;
  Tensor out = make_view(*this, s, st, storage_offset());
  if (any_requires_grad({*this})) {
    const Shape in = shape();
    record("expand", out, {*this}, [in](const Tensor& g, const Node&) { return std::vector<Tensor>{sum_to(g, in)}; });
  }
  return out;
}

Tensor Tensor::squeeze(int64_t d) const {
  if (dim() == 0) return *this;
  const int dd = wrap_dim(d, dim(), "squeeze");
  if (shape()[dd] != 1) return *this;
  Shape s = shape();
  s.erase(dd);
  return view(s);
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t v : shape())
    if (v != 1) s.push_back(v);
  return s == shape() ? *this : view(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int dd = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  s.insert(dd, 1);
  return view(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return view({1});
  const int a = wrap_dim(start, dim(), "flatten"), b = wrap_dim(end, dim(), "flatten");
  if (a > b) error("flatten: start dim ", a, " after end dim ", b);
  Shape s;
  for (int i = 0; i < a; ++i) s.push_back(shape()[i]);
  int64_t p = 1;
  for (int i = a; i <= b; ++i) p *= shape()[i];
  s.push_back(p);
  for (int i = b + 1; i < dim(); ++i) s.push_back(shape()[i]);
  return reshape(s);
}

}  // namespace fm

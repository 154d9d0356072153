// Joining, splitting and padding. Device independent: cat copies each input
// into a slice of its output with the copy kernel, split and chunk are views,
// and pad is a slice copy (constant) or an index_select per padded dim
// (reflect, replicate), whose backward is index_select's.
#include "fm/ops/shape_ops.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/ops/index.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

// Which inputs take part: as in PyTorch, 1-D empty tensors are skipped (an
// empty accumulator joins anything) unless all are such.
std::vector<bool> joined_inputs(const std::vector<Tensor>& ts) {
  std::vector<bool> joined;
  bool any = false;
  for (const Tensor& t : ts) {
    joined.push_back(!(t.dim() == 1 && t.numel() == 0));
    any = any || joined.back();
  }
  if (!any) joined[0] = true;
  return joined;
}

void check_cat_inputs(const std::vector<Tensor>& ts, const std::vector<bool>& joined, size_t ref, int d) {
  const Tensor& r = ts[ref];
  for (size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = ts[i];
    if (!joined[i]) continue;
    if (t.device() != r.device())
      error("cat: tensor ", i, " is on ", t.device().str(), " but tensor ", ref, " on ", r.device().str());
    bool match = t.dim() == r.dim();
    for (int k = 0; match && k < r.dim(); ++k) match = k == d || t.size(k) == r.size(k);
    if (!match)
      error("cat: tensor ", i, " has shape ", t.shape(), " but tensor ", ref, " has ", r.shape(), " (all dims but ",
            d, " must match)");
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) error("cat: expects a non-empty list of tensors");
  const std::vector<bool> joined = joined_inputs(tensors);
  const size_t ref = size_t(std::find(joined.begin(), joined.end(), true) - joined.begin());
  const Tensor& r = tensors[ref];
  if (r.dim() == 0) error("cat: tensor ", ref, " is a scalar (0-D) and cannot be concatenated");
  const int d = wrap_dim(dim, r.dim(), "cat");
  check_cat_inputs(tensors, joined, ref, d);

  DType dtype = r.dtype();
  Shape shape = r.shape();
  shape[d] = 0;
  std::vector<int64_t> starts, lengths;  // along d; length -1 for a skipped input
  std::vector<DType> dtypes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    starts.push_back(shape[d]);
    lengths.push_back(joined[i] ? t.size(d) : -1);
    dtypes.push_back(t.dtype());
    if (!joined[i]) continue;
    dtype = promote(dtype, t.dtype());
    shape[d] += t.size(d);
  }
  Tensor out = make_tensor(shape, dtype, r.device());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (joined[i]) kernels::copy(out.device(), out.narrow(d, starts[i], lengths[i]), tensors[i]);

  if (any_requires_grad(tensors)) {
    record("cat", out, tensors, [d, starts, lengths, dtypes](const Tensor& g, const Node& n) {
      Grads grads(lengths.size());
      for (size_t i = 0; i < lengths.size(); ++i) {
        if (!n.needs_input_grad(i)) continue;
        if (lengths[i] < 0) {
          grads[i] = zeros({0}, TensorOptions(dtypes[i]).device(g.device()));
          continue;
        }
        Tensor gi = g.narrow(d, starts[i], lengths[i]);
        grads[i] = gi.dtype() == dtypes[i] ? gi : gi.to(dtypes[i]);
      }
      return grads;
    });
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  if (tensors.empty()) error("stack: expects a non-empty list of tensors");
  const int d = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].shape() != tensors[0].shape())
      error("stack: tensor ", i, " has shape ", tensors[i].shape(), " but tensor 0 has ", tensors[0].shape(),
            " (all shapes must match)");
    parts.push_back(tensors[i].unsqueeze(d));
  }
  return cat(parts, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  const int d = wrap_dim(dim, x.dim(), "split");
  const int64_t n = x.size(d);
  if (split_size < 0 || (split_size == 0 && n > 0))
    error("split: split_size must be positive, got ", split_size, " for dim ", d, " of size ", n);
  if (n == 0) return {x};
  std::vector<Tensor> pieces;
  for (int64_t start = 0; start < n; start += split_size)
    pieces.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  return pieces;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) error("split: negative size ", s, " in ", Shape(sizes));
    total += s;
  }
  if (total != x.size(d))
    error("split: sizes ", Shape(sizes), " sum to ", total, " but dim ", d, " of ", x.shape(), " has size ",
          x.size(d));
  std::vector<Tensor> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(x.narrow(d, start, s));
    start += s;
  }
  return pieces;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  if (chunks <= 0) error("chunk: chunks must be positive, got ", chunks);
  const int d = wrap_dim(dim, x.dim(), "chunk");
  return split(x, (x.size(d) + chunks - 1) / chunks, d);
}

// ---- pad

namespace {

// Copies the part of x that survives cropping into its place in out.
void copy_kept_part(const Tensor& x, const Tensor& out, const std::vector<int64_t>& pads) {
  NoGradGuard ng;  // the slicing is bookkeeping, not part of the graph
  Tensor src = x, dst = out;
  for (size_t p = 0; p < pads.size() / 2; ++p) {
    const int d = x.dim() - 1 - int(p);
    const int64_t left = pads[2 * p], right = pads[2 * p + 1];
    const int64_t kept = x.size(d) - std::max<int64_t>(0, -left) - std::max<int64_t>(0, -right);
    if (kept <= 0) return;  // everything cropped: out is all padding
    src = src.narrow(d, std::max<int64_t>(0, -left), kept);
    dst = dst.narrow(d, std::max<int64_t>(0, left), kept);
  }
  kernels::copy(x.device(), dst, src);
}

// Constant padding: a filled output with x's kept part copied in. Its
// backward is the opposite padding, which crops what was added.
Tensor pad_constant(const Tensor& x, const std::vector<int64_t>& pads, double value, const Shape& out_shape) {
  Tensor out = full(out_shape, value, TensorOptions(x.dtype()).device(x.device()));
  copy_kept_part(x, out, pads);
  if (any_requires_grad({x})) {
    std::vector<int64_t> back;
    for (int64_t p : pads) back.push_back(-p);
    record("pad", out, {x}, [back](const Tensor& g, const Node&) { return Grads{pad(g, back, "constant", 0.0)}; });
  }
  return out;
}

// Source position of each output position along a dim of size n padded by
// (left, right): reflected about the edges, or clamped to them.
std::vector<int64_t> pad_positions(int64_t n, int64_t left, int64_t right, bool reflect) {
  std::vector<int64_t> pos;
  for (int64_t i = -left; i < n + right; ++i) {
    if (reflect) pos.push_back(i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i));
    else pos.push_back(std::clamp<int64_t>(i, 0, n - 1));
  }
  return pos;
}

}  // namespace

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode, double value) {
  if (pads.size() % 2 != 0) error("pad: pads must come in (left, right) pairs, got ", pads.size(), " values");
  if (int(pads.size() / 2) > x.dim())
    error("pad: ", pads.size() / 2, " padded dims for a tensor of shape ", x.shape());
  const bool reflect = mode == "reflect";
  if (mode != "constant" && !reflect && mode != "replicate")
    error("pad: mode must be 'constant', 'reflect' or 'replicate', got '", mode, "'");

  Shape out_shape = x.shape();
  for (size_t p = 0; p < pads.size() / 2; ++p) {
    const int d = x.dim() - 1 - int(p);
    const int64_t left = pads[2 * p], right = pads[2 * p + 1], n = x.size(d);
    out_shape[d] = n + left + right;
    if (out_shape[d] < 0)
      error("pad: padding (", left, ", ", right, ") of dim ", d, " (size ", n, ") of ", x.shape(),
            " gives a negative size");
    if (reflect && ((left > 0 && left >= n) || (right > 0 && right >= n)))
      error("pad: reflect padding (", left, ", ", right, ") must be smaller than dim ", d, " of size ", n, " in ",
            x.shape());
    if (!reflect && mode != "constant" && n == 0 && out_shape[d] > 0)
      error("pad: cannot replicate-pad the empty dim ", d, " of ", x.shape());
  }
  if (mode == "constant") return pad_constant(x, pads, value, out_shape);

  Tensor out = x;
  for (size_t p = 0; p < pads.size() / 2; ++p) {
    const int d = x.dim() - 1 - int(p);
    if (pads[2 * p] == 0 && pads[2 * p + 1] == 0) continue;
    const std::vector<int64_t> pos = pad_positions(x.size(d), pads[2 * p], pads[2 * p + 1], reflect);
    out = index_select(out, d, tensor(pos, Shape{int64_t(pos.size())}, TensorOptions(DType::i64).device(x.device())));
  }
  return out.is_same(x) ? x.clone() : out;
}

}  // namespace fm

// dropout: the keep mask is a function of the Philox state reserved here, so
// the backward regenerates it instead of storing it.
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/attention.h"
#include "fm/ops/attention.h"
#include "fm/tensor_impl.h"

namespace fm {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  if (!(p >= 0.0 && p <= 1.0)) error("dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (!is_floating(x.dtype())) error("dropout: x must be floating, got ", x.dtype());

  if (p == 1.0) {  // everything dropped: no draw, zero gradient
    Tensor out = zeros_like(x);
    if (any_requires_grad({x}))
      record("dropout", out, {x}, [](const Tensor& g, const Node&) { return std::vector<Tensor>{zeros_like(g)}; });
    return out;
  }
  const PhiloxState state = (gen ? *gen : default_generator()).reserve(kernels::dropout_blocks(x.numel()));
  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  kernels::dropout(x.device(), out, x.detach().contiguous(), state, p);
  if (any_requires_grad({x}))
    record("dropout", out, {x}, [state, p](const Tensor& g, const Node&) {
      const Tensor gc = g.contiguous();
      Tensor gx = make_tensor(gc.shape(), gc.dtype(), gc.device());
      kernels::dropout(gc.device(), gx, gc, state, p);
      return std::vector<Tensor>{gx};
    });
  return out;
}

}  // namespace fm

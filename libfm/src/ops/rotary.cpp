// rotary_embedding: checks and the autograd node; the rotation is the
// `rotary` kernel, whose inverse (rotation by minus the angle) is the backward.
#include "fm/autograd.h"
#include "fm/kernels/attention.h"
#include "fm/ops/attention.h"
#include "fm/tensor_impl.h"

namespace fm {

Tensor rotary_embedding(const Tensor& x, int64_t start_pos, double theta) {
  if (!x.defined() || x.dim() != 4) error("rotary_embedding: x must be [B, H, T, D], got ", x.shape());
  if (x.size(3) % 2 != 0) error("rotary_embedding: head dim must be even, got x ", x.shape());
  if (!is_floating(x.dtype())) error("rotary_embedding: x must be floating, got ", x.dtype());
  if (start_pos < 0) error("rotary_embedding: start_pos must be >= 0, got ", start_pos);
  if (!(theta > 0)) error("rotary_embedding: theta must be > 0, got ", theta);

  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  kernels::rotary(x.device(), out, x.detach().contiguous(), start_pos, theta, false);
  if (any_requires_grad({x}))
    record("rotary_embedding", out, {x}, [start_pos, theta](const Tensor& g, const Node&) {
      const Tensor gc = g.contiguous();
      Tensor gx = make_tensor(gc.shape(), gc.dtype(), gc.device());
      kernels::rotary(gc.device(), gx, gc, start_pos, theta, true);
      return std::vector<Tensor>{gx};
    });
  return out;
}

}  // namespace fm

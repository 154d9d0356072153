// scaled_dot_product_attention: shape, dtype and mask rules and the autograd
// node. The tiled forward and backward are kernels (fm/kernels/attention.h).
#include <cmath>

#include "fm/autograd.h"
#include "fm/kernels/attention.h"
#include "fm/ops/attention.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

void check_inputs(const Tensor& q, const Tensor& k, const Tensor& v) {
  if (!q.defined() || !k.defined() || !v.defined()) error(kOp, ": q, k and v must be defined");
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4)
    error(kOp, ": q, k and v must be [B, H, T, D], got q ", q.shape(), ", k ", k.shape(), ", v ", v.shape());
  if (!is_floating(q.dtype()) || k.dtype() != q.dtype() || v.dtype() != q.dtype())
    error(kOp, ": q, k and v need one floating dtype, got ", q.dtype(), ", ", k.dtype(), ", ", v.dtype());
  if (k.device() != q.device() || v.device() != q.device())
    error(kOp, ": q, k and v on different devices (", q.device().str(), ", ", k.device().str(), ", ",
          v.device().str(), ")");
  for (int d = 0; d < 2; ++d)
    if (k.size(d) != q.size(d) || v.size(d) != q.size(d))
      error(kOp, ": q ", q.shape(), ", k ", k.shape(), " and v ", v.shape(), " differ in batch or heads");
  if (k.size(3) != q.size(3)) error(kOp, ": q ", q.shape(), " and k ", k.shape(), " differ in head dim");
  if (v.size(2) != k.size(2)) error(kOp, ": k ", k.shape(), " and v ", v.shape(), " differ in length");
}

// The mask as the kernel reads it: a [B,H,Tq,Tk] view, bool or in `acc`.
Tensor prepare_mask(const Tensor& mask, const Shape& scores, DType acc, Device device) {
  if (!mask.defined()) return mask;
  if (mask.dtype() != DType::b8 && !is_floating(mask.dtype()))
    error(kOp, ": mask must be bool or floating, got ", mask.dtype());
  if (mask.device() != device)
    error(kOp, ": mask on ", mask.device().str(), ", q on ", device.str());
  if (mask.dim() > 4 || broadcast_shapes(mask.shape(), scores, kOp) != scores)
    error(kOp, ": mask ", mask.shape(), " does not broadcast to the scores ", scores);
  Tensor m = mask.detach();
  if (m.dtype() != DType::b8 && m.dtype() != acc) m = m.to(acc);
  return m.expand(scores);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    bool causal, double scale) {
  check_inputs(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3), Dv = v.size(3);
  const DType t = q.dtype(), acc = t == DType::f64 ? DType::f64 : DType::f32;
  const Device dev = q.device();
  if (scale == 0.0) scale = 1.0 / std::sqrt(double(D));
  const Tensor m = prepare_mask(mask, {B, H, Tq, Tk}, acc, dev);

  // Detached contiguous inputs: the node below is the only graph edge.
  const Tensor qc = q.detach().contiguous(), kc = k.detach().contiguous(), vc = v.detach().contiguous();
  Tensor out = make_tensor({B, H, Tq, Dv}, t, dev);
  const Tensor lse = make_tensor({B, H, Tq}, acc, dev);
  kernels::attention_forward(dev, out, lse, qc, kc, vc, m, causal, scale);

  if (any_requires_grad({q, k, v})) {
    const Tensor o = out.detach();
    record(kOp, out, {q, k, v}, [qc, kc, vc, o, lse, m, causal, scale](const Tensor& g, const Node& n) {
      const Tensor dout = (g.dtype() == qc.dtype() ? g : g.to(qc.dtype())).contiguous();
      Tensor dq = make_tensor(qc.shape(), qc.dtype(), qc.device());
      Tensor dk = make_tensor(kc.shape(), kc.dtype(), kc.device());
      Tensor dv = make_tensor(vc.shape(), vc.dtype(), vc.device());
      kernels::attention_backward(qc.device(), dq, dk, dv, dout, qc, kc, vc, o, lse, m, causal, scale);
      return std::vector<Tensor>{n.needs_input_grad(0) ? dq : Tensor(), n.needs_input_grad(1) ? dk : Tensor(),
                                 n.needs_input_grad(2) ? dv : Tensor()};
    });
  }
  return out;
}

}  // namespace fm

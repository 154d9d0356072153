// scaled_dot_product_attention: shape, dtype and mask rules and the autograd
// node. The tiled forward and backward are kernels (fm/kernels/attention.h).
#include <cmath>

#include "fm/autocast.h"
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
// Key ranges (i32 [.., .., Tq, 2]) become a [B,H,Tq,2] view.
Tensor prepare_mask(const Tensor& mask, const Shape& scores, DType acc, Device device) {
  if (!mask.defined()) return mask;
  if (mask.device() != device)
    error(kOp, ": mask on ", mask.device().str(), ", q on ", device.str());
  if (mask.dtype() == DType::i32) {
    const Shape ranges{scores[0], scores[1], scores[2], 2};
    if (mask.dim() != 4 || mask.size(3) != 2 || broadcast_shapes(mask.shape(), ranges, kOp) != ranges)
      error(kOp, ": key ranges ", mask.shape(), " must be [B or 1, H or 1, ", scores[2], ", 2]");
    return mask.detach().expand(ranges);
  }
  if (mask.dtype() != DType::b8 && !is_floating(mask.dtype()))
    error(kOp, ": mask must be bool, floating or i32 key ranges, got ", mask.dtype());
  if (mask.dim() > 4 || broadcast_shapes(mask.shape(), scores, kOp) != scores)
    error(kOp, ": mask ", mask.shape(), " does not broadcast to the scores ", scores);
  Tensor m = mask.detach();
  if (m.dtype() != DType::b8 && m.dtype() != acc) m = m.to(acc);
  return m.expand(scores);
}

// The kernels read [B,H,T,D] operands through their strides but need rows
// (the last dim) unit-stride.
Tensor unit_rows(const Tensor& x) { return x.size(3) <= 1 || x.stride(3) == 1 ? x : x.contiguous(); }

// A new [B,H,T,D] tensor laid out like `like`: [B,T,H,D] in memory when
// `like` is a head-split view of [B,T,H*D] rows (then merging heads after
// the op is a free view, and gradients flow back without transposing
// copies), else contiguous.
Tensor new_heads_like(const Tensor& like, int64_t D, DType t) {
  const int64_t B = like.size(0), H = like.size(1), T = like.size(2);
  if (H > 1 && T > 1 && like.stride(1) < like.stride(2))
    return make_tensor({B, T, H, D}, t, like.device()).transpose(1, 2);
  return make_tensor({B, H, T, D}, t, like.device());
}

// Part `part` of each row of t [B, T, parts * H * D] as [B, H, T, D] heads.
Tensor head_split(const Tensor& t, int64_t part, int64_t H, int64_t D) {
  return t.narrow(2, part * H * D, H * D).view({t.size(0), t.size(1), H, D}).transpose(1, 2);
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& mask,
                                    bool causal, double scale) {
  const Tensor q = autocast(q_in), k = autocast(k_in), v = autocast(v_in);
  check_inputs(q, k, v);
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3), Dv = v.size(3);
  const DType t = q.dtype(), acc = t == DType::f64 ? DType::f64 : DType::f32;
  const Device dev = q.device();
  if (scale == 0.0) scale = 1.0 / std::sqrt(double(D));
  const Tensor m = prepare_mask(mask, {B, H, Tq, Tk}, acc, dev);

  // Detached inputs: the node below is the only graph edge.
  const Tensor qc = unit_rows(q.detach()), kc = unit_rows(k.detach()), vc = unit_rows(v.detach());
  Tensor out = new_heads_like(qc, Dv, t);
  const Tensor lse = make_tensor({B, H, Tq}, acc, dev);
  kernels::attention_forward(dev, out, lse, qc, kc, vc, m, causal, scale);

  if (any_requires_grad({q, k, v})) {
    const Tensor o = out.detach();
    record(kOp, out, {q, k, v}, [qc, kc, vc, o, lse, m, causal, scale](const Tensor& g, const Node& n) {
      const Tensor dout = unit_rows(g.dtype() == qc.dtype() ? g : g.to(qc.dtype()));
      Tensor dq = new_heads_like(qc, qc.size(3), qc.dtype());
      Tensor dk = new_heads_like(kc, kc.size(3), kc.dtype());
      Tensor dv = new_heads_like(vc, vc.size(3), vc.dtype());
      kernels::attention_backward(qc.device(), dq, dk, dv, dout, qc, kc, vc, o, lse, m, causal, scale);
      return std::vector<Tensor>{n.needs_input_grad(0) ? dq : Tensor(), n.needs_input_grad(1) ? dk : Tensor(),
                                 n.needs_input_grad(2) ? dv : Tensor()};
    });
  }
  return out;
}

Tensor scaled_dot_product_attention_qkvpacked(const Tensor& qkv_in, int64_t n_head, const Tensor& mask, bool causal,
                                             double scale) {
  const Tensor qkv = autocast(qkv_in);
  constexpr const char* op = "scaled_dot_product_attention_qkvpacked";
  if (!qkv.defined() || qkv.dim() != 3 || n_head <= 0 || qkv.size(2) % (3 * n_head) != 0)
    error(op, ": qkv must be [B, T, 3 * n_head * D], got ", qkv.defined() ? qkv.shape() : Shape{}, " with n_head ",
          n_head);
  if (!is_floating(qkv.dtype())) error(op, ": qkv must be floating, got ", qkv.dtype());
  const int64_t B = qkv.size(0), T = qkv.size(1), H = n_head, D = qkv.size(2) / (3 * n_head);
  const DType t = qkv.dtype(), acc = t == DType::f64 ? DType::f64 : DType::f32;
  const Device dev = qkv.device();
  if (scale == 0.0) scale = 1.0 / std::sqrt(double(D));
  const Tensor m = prepare_mask(mask, {B, H, T, T}, acc, dev);

  const Tensor x = qkv.stride(2) == 1 ? qkv.detach() : qkv.detach().contiguous();
  Tensor out = make_tensor({B, T, H * D}, t, dev);
  const Tensor lse = make_tensor({B, H, T}, acc, dev);
  kernels::attention_forward(dev, head_split(out, 0, H, D), lse, head_split(x, 0, H, D), head_split(x, 1, H, D),
                             head_split(x, 2, H, D), m, causal, scale);

  if (any_requires_grad({qkv})) {
    const Tensor o = out.detach();
    record(op, out, {qkv}, [x, o, lse, m, causal, scale, H, D](const Tensor& g, const Node&) {
      Tensor dout = g.dtype() == x.dtype() ? g : g.to(x.dtype());
      if (dout.stride(2) != 1) dout = dout.contiguous();
      // One buffer takes dq, dk and dv side by side: the gradient of qkv as is.
      Tensor dqkv = make_tensor(x.shape(), x.dtype(), x.device());
      kernels::attention_backward(x.device(), head_split(dqkv, 0, H, D), head_split(dqkv, 1, H, D),
                                  head_split(dqkv, 2, H, D), head_split(dout, 0, H, D), head_split(x, 0, H, D),
                                  head_split(x, 1, H, D), head_split(x, 2, H, D), head_split(o, 0, H, D), lse, m,
                                  causal, scale);
      return std::vector<Tensor>{dqkv};
    });
  }
  return out;
}

}  // namespace fm

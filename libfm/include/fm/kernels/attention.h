#pragma once
// Kernel slots of attention, rotary embedding and dropout (ops in
// fm/ops/attention.h). Outputs come first and are allocated by the caller.
#include <cstdint>

#include "fm/kernels/kernel.h"
#include "fm/random.h"
#include "fm/tensor.h"

namespace fm::kernels {

// Flash-style attention over q [B,H,Tq,D], k [B,H,Tk,D], v [B,H,Tk,Dv] of
// one floating dtype (half types compute in f32). Every [B,H,T,D] operand
// here, inputs and outputs, may have any strides on B, H and T but unit
// stride on the last dim (e.g. heads split from a fused qkv projection).
// `mask` is undefined or a [B,H,Tq,Tk] view (stride 0 on broadcast dims),
// bool (true = attend) or additive in lse's dtype, or key ranges: an i32
// [B,H,Tq,2] view, query i seeing keys lo <= j < hi. Query i sees key j only if
// j <= i + (Tk - Tq) when `causal`. Scores are `scale` * q.k (+ mask).
//
// Forward fills out [B,H,Tq,Dv] (q's dtype) and lse [B,H,Tq], the per-row
// log-sum-exp of the scores (f64 for f64 inputs, else f32). A row with no
// visible key gets out = 0 and lse = +inf, so exp(score - lse) is 0 there.
extern Kernel<void(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& mask, bool causal, double scale)>
    attention_forward;
// Backward from dout [B,H,Tq,Dv] and the forward's out and lse: fills dq,
// dk, dv (the inputs' dtype and shapes).
extern Kernel<void(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                   const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& mask,
                   bool causal, double scale)>
    attention_backward;

// Rotary embedding of contiguous x [B,H,T,D] into out (same shape and dtype):
// pairs (i, i + D/2) of row t turn by angle (start_pos + t) * theta^(-2i/D),
// or by minus that angle when `inverse` (the backward).
extern Kernel<void(const Tensor& out, const Tensor& x, int64_t start_pos, double theta, bool inverse)> rotary;

// out = x * keep / (1 - p) for contiguous x, 0 < p < 1. Element i is kept
// when the uniform from lane i % 4 of Philox block i / 4 of `state` exceeds
// p; the backward calls it on the gradient with the same state.
extern Kernel<void(const Tensor& out, const Tensor& x, PhiloxState state, double p)> dropout;
// Counter blocks a dropout over n elements uses.
inline uint64_t dropout_blocks(int64_t n) { return uint64_t((n + 3) / 4); }

}  // namespace fm::kernels

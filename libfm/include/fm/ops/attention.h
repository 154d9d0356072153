#pragma once
#include "fm/random.h"
#include "fm/tensor.h"

namespace fm {

// q [B, H, Tq, D], k [B, H, Tk, D], v [B, H, Tk, Dv] -> [B, H, Tq, Dv].
// Flash-style tiled forward and backward: only the per-row log-sum-exp is kept
// for backward, never a Tq x Tk matrix. mask: optional, bool (true = attend)
// or additive float, broadcastable to [B, H, Tq, Tk]; or key ranges, i32
// [B or 1, H or 1, Tq, 2]: query i sees keys lo <= j < hi (the (lo, hi) of
// its row), so a block-diagonal or prefix layout needs no Tq x Tk mask and
// the kernels skip key tiles outside every range. It gets no gradient.
// causal: query i sees keys j <= i + (Tk - Tq). scale: 0 means 1/sqrt(D).
// A query row that sees no key gives zeros (and zero gradients), not NaN.
// bf16/f16 inputs compute in f32.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& mask = Tensor(), bool causal = false,
                                    double scale = 0.0);

// Self-attention over a fused projection qkv [B, T, 3 * n_head * D] (each row
// holds q, k and v side by side, heads in order, as flash-attn's qkvpacked)
// -> [B, T, n_head * D], heads merged. The same attention as
// scaled_dot_product_attention on the head-split views, but no head split or
// merge is ever copied and the gradient of qkv is one buffer.
Tensor scaled_dot_product_attention_qkvpacked(const Tensor& qkv, int64_t n_head, const Tensor& mask = Tensor(),
                                             bool causal = false, double scale = 0.0);

// Rotary position embedding on x [B, H, T, D] (D even), rotating pairs
// (i, i + D/2) as GPT-NeoX / LLaMA; position of row t is `start_pos + t`.
Tensor rotary_embedding(const Tensor& x, int64_t start_pos = 0, double theta = 10000.0);

// Zeroes each element with probability p and scales the rest by 1/(1-p);
// the mask comes from Philox, so it is reproducible from the generator state.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);

}  // namespace fm

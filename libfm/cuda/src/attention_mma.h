#pragma once
// Tensor-core flash attention for the common training case (see
// attention_mma.cu). Same arguments as the attention_forward and
// attention_backward slots; each returns false, having done nothing, when
// the case is not one it supports, and the caller falls back to the SIMT
// kernels of attention.cu.
#include "fm/tensor.h"

namespace fm::cuda {

bool attention_mma_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& mask, bool causal, double scale);

bool attention_mma_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            const Tensor& mask, bool causal, double scale);

}  // namespace fm::cuda

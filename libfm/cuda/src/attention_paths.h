#pragma once
// The fast attention paths attention.cu tries before its SIMT kernels, in
// this order: cuDNN's fused flash attention (attention_cudnn.cpp; stubs when
// libfm is built without cuDNN or cudnn-frontend), then libfm's tensor-core
// kernels (attention_mma.cu). Each takes the arguments of the
// attention_forward / attention_backward slots and returns false, having
// written nothing the caller relies on, when it does not run the case.
#include "fm/tensor.h"

namespace fm::cuda {

bool attention_cudnn_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& mask, bool causal, double scale);
bool attention_cudnn_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                              const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                              const Tensor& mask, bool causal, double scale);

bool attention_mma_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& mask, bool causal, double scale);
bool attention_mma_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            const Tensor& mask, bool causal, double scale);

}  // namespace fm::cuda

#pragma once
// cuDNN's fused flash attention through cudnn-frontend (see
// attention_cudnn.cpp). Same arguments as the attention_forward and
// attention_backward slots; each returns false, having written nothing the
// caller relies on, when cuDNN does not run the case (or libfm was built
// without cuDNN or its frontend), and the caller falls back to libfm's kernels.
#include "fm/tensor.h"

namespace fm::cuda {

bool attention_cudnn_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& mask, bool causal, double scale);

bool attention_cudnn_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                              const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                              const Tensor& mask, bool causal, double scale);

}  // namespace fm::cuda

#pragma once
#include "fm/tensor.h"

namespace fm {

// torch.matmul: 1-D operands are promoted and the added dim removed; batch
// dims broadcast; transposed views are passed to the GEMM without a copy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x @ weight^T + bias, weight [out, in], bias [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace fm

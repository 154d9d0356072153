#pragma once
// Softmax and normalisations: fused kernels with hand-written backward.
#include "fm/tensor.h"

namespace fm {

// Floating inputs; the result has x's dtype (bf16/f16 are computed in f32).
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the trailing dims of `normalized_shape`'s rank; weight and
// bias (that shape) are optional and may have another floating dtype than x
// (they are used in x's dtype; their gradients come back in their own).
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                double eps = 1e-6);
// x [N, C, *]; weight, bias [C] optional. Statistics per sample over each
// group of C / num_groups channels and all spatial positions.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// x / max(||x||_p, eps) along dim (p = 2).
Tensor normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

}  // namespace fm

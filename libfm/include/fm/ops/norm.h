#pragma once
// Softmax and normalisations: fused kernels with hand-written backward.
#include "fm/tensor.h"

namespace fm {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the trailing dims of `normalized_shape`'s rank; weight and
// bias (that shape) are optional.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                double eps = 1e-6);
// x [N, C, *]; weight, bias [C] optional.
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
// x / max(||x||_p, eps) along dim (p = 2).
Tensor normalize(const Tensor& x, int64_t dim = -1, double eps = 1e-12);

}  // namespace fm

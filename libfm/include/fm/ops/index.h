#pragma once
// Gathers and scatters by integer (i32 or i64) indices.
#include "fm/tensor.h"

namespace fm {

// weight [num, dim], ids any shape -> [..., dim]. Backward scatter-adds rows;
// rows equal to padding_idx (when >= 0) get no gradient.
Tensor embedding(const Tensor& ids, const Tensor& weight, int64_t padding_idx = -1);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim 1.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of x with src added at index along dim (torch.scatter_add).
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace fm

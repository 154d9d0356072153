#pragma once
// Gathers and scatters by integer (i32 or i64) indices. An index outside
// [0, size) throws fm::Error naming the op, the value and the size.
#include "fm/tensor.h"

namespace fm {

// weight [num, dim], ids any shape -> [..., dim]. Backward scatter-adds rows
// (deterministically); rows equal to padding_idx (when >= 0) get no gradient.
Tensor embedding(const Tensor& ids, const Tensor& weight, int64_t padding_idx = -1);
// index is 0-D or 1-D; dim keeps its place with size index.numel().
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// torch.gather: out[i][j][k] = x[i][index[i][j][k]][k] for dim 1.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// A copy of x with src added at index along dim (torch.scatter_add); src may
// be larger than index, whose part alone is used. Repeated indices add in
// index order, whatever the thread count.
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace fm

#pragma once
// Kernel slots of the index ops (gathers and scatters along one dim).
// Conventions: indices are i32 or i64 and already range-checked by the op
// (see index_bounds); outputs are allocated by the caller; other tensors may
// be strided views; dtypes match. The scatter kernels add in index order, so
// their results do not depend on the thread count.
#include <cstdint>

#include "fm/kernels/dispatch.h"
#include "fm/kernels/kernel.h"
#include "fm/tensor.h"

namespace fm::kernels {

struct IndexBounds {
  int64_t min = 0, max = -1;  // an empty index has min > max
};
// The smallest and largest value of an integer tensor.
extern Kernel<IndexBounds(const Tensor& index)> index_bounds;

// out = x with dim restricted to the rows in index (1-D):
// out[.., i, ..] = x[.., index[i], ..].
extern Kernel<void(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index)> index_select;
// The reverse: out[.., index[i], ..] += src[.., i, ..] (index 1-D). out must
// not overlap itself (no stride 0).
extern Kernel<void(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src)> index_add;

// torch.gather: out[p] = x[p with coordinate dim replaced by index[p]];
// out and index have one shape, not larger than x except along dim.
extern Kernel<void(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index)> gather;
// torch.scatter_add_: out[p with coordinate dim replaced by index[p]] += src[p]
// for every p of index's shape (src has that shape). out must not overlap itself.
extern Kernel<void(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src)> scatter_add;

// ---- host helpers shared by the backends' index kernels

// f(Tag<I>{}) with I the index dtype t (int32 or int64); raises for any other.
template <class F>
decltype(auto) dispatch_index(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::i32: return f(Tag<int32_t>{});
    case DType::i64: return f(Tag<int64_t>{});
    default: error(op, ": indices must be int32 or int64, got ", t);
  }
}

// t viewed over `sizes` with dim d removed.
Tensor without_dim(const Tensor& t, const Shape& sizes, int d);
// A 1-D index seen as an index of `shape`: index[i] at coordinate i of dim d.
Tensor broadcast_index(const Tensor& index, const Shape& shape, int d);

}  // namespace fm::kernels

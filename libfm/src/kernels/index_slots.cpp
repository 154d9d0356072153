// The index kernel slots (declared in fm/kernels/index.h).
#include "fm/kernels/index.h"

#include "fm/tensor_impl.h"

namespace fm::kernels {

constinit Kernel<IndexBounds(const Tensor&)> index_bounds{"index_bounds"};
constinit Kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)> index_select{"index_select"};
constinit Kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)> index_add{"index_add"};
constinit Kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)> gather{"gather"};
constinit Kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)> scatter_add{"scatter_add"};

Tensor without_dim(const Tensor& t, const Shape& sizes, int d) {
  Shape s, st;
  for (int i = 0; i < sizes.size(); ++i) {
    if (i == d) continue;
    s.push_back(sizes[i]);
    st.push_back(t.strides()[i]);
  }
  return make_view(t, s, st, t.storage_offset());
}

Tensor broadcast_index(const Tensor& index, const Shape& shape, int d) {
  Shape st;
  st.resize(shape.size(), 0);
  st[d] = index.strides()[0];
  return make_view(index, shape, st, index.storage_offset());
}

}  // namespace fm::kernels

// The index kernel slots (declared in fm/kernels/index.h).
#include "fm/kernels/index.h"

namespace fm::kernels {

constinit Kernel<IndexBounds(const Tensor&)> index_bounds{"index_bounds"};
constinit Kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)> index_select{"index_select"};
constinit Kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)> index_add{"index_add"};
constinit Kernel<void(const Tensor&, const Tensor&, int64_t, const Tensor&)> gather{"gather"};
constinit Kernel<void(const Tensor&, int64_t, const Tensor&, const Tensor&)> scatter_add{"scatter_add"};

}  // namespace fm::kernels

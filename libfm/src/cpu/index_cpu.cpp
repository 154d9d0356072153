// CPU gathers and scatters along one dim. The four kernels share one loop:
// the positions of the tensor walked in order (b: the output of a gather, the
// source of a scatter) are split into columns (every dim but `dim`) and steps
// along dim. A scatter gives each thread whole columns and walks the steps in
// order, so no two threads add into one element and every sum is taken in
// index order whatever the thread count.
#include <omp.h>

#include <algorithm>
#include <limits>

#include "dispatch.h"
#include "fm/kernels/index.h"

namespace fm::cpu {
namespace {

using kernels::broadcast_index;
using kernels::dispatch_index;
using kernels::IndexBounds;
using kernels::without_dim;

constexpr int64_t kMinBlock = 16;  // columns below which a scatter does not split a run

IndexBounds index_bounds_kernel(const Tensor& index) {
  if (index.numel() == 0) return {};
  const Tensor c = index.contiguous();
  const int64_t n = c.numel();
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  dispatch_index(c.dtype(), "index_bounds", [&](auto tag) {
    using I = typename decltype(tag)::type;
    const I* p = static_cast<const I*>(c.data_ptr());
#pragma omp parallel for reduction(min : lo) reduction(max : hi) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      lo = std::min<int64_t>(lo, p[i]);
      hi = std::max<int64_t>(hi, p[i]);
    }
  });
  return {lo, hi};
}

// Gather: b[p] = a[p with coordinate d = index[p]]. Scatter: a[that] += b[p].
// `index` has b's shape (stride 0 where it is broadcast).
template <bool kScatter, class T, class I>
void index_loop(const Tensor& a, const Tensor& b, const Tensor& index, int d) {
  const Shape& shape = b.shape();
  if (shape.numel() == 0) return;
  const Tensor ac = without_dim(a, shape, d), bc = without_dim(b, shape, d), ic = without_dim(index, shape, d);
  const StridedPlan<3> plan(bc.shape(), {&ac, &bc, &ic});
  const int64_t steps = shape[d], a_step = a.strides()[d], b_step = b.strides()[d], i_step = index.strides()[d];
  T* pa = static_cast<T*>(a.data_ptr());
  T* pb = static_cast<T*>(b.data_ptr());
  const I* pi = static_cast<const I*>(index.data_ptr());

  const int last = plan.nd - 1;
  const int64_t inner = plan.size[last];
  int64_t outer = 1;
  for (int k = 0; k < last; ++k) outer *= plan.size[k];
  const int64_t sa = plan.stride[0][last], sb = plan.stride[1][last], si = plan.stride[2][last];

  // Enough tasks for every thread: a scatter splits runs of columns, a
  // gather (no write conflicts) splits the steps instead.
  const int64_t wanted = 4 * int64_t(omp_get_max_threads());
  const int64_t pieces = std::max<int64_t>(1, (wanted + outer - 1) / outer);
  int64_t block = inner, step_chunks = 1;
  if (kScatter) block = std::max(kMinBlock, (inner + pieces - 1) / pieces);
  else step_chunks = std::min(pieces, steps);
  const int64_t blocks = (inner + block - 1) / block;
  const int64_t step_len = (steps + step_chunks - 1) / step_chunks;
  const int64_t tasks = outer * blocks * step_chunks;

#pragma omp parallel for schedule(static) if (tasks > 1 && shape.numel() > kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t chunk = t % step_chunks, blk = t / step_chunks % blocks;
    int64_t off[3] = {};
    for (int64_t rem = t / (step_chunks * blocks), k = last - 1; k >= 0; --k) {
      const int64_t i = rem % plan.size[k];
      rem /= plan.size[k];
      for (int q = 0; q < 3; ++q) off[q] += i * plan.stride[q][k];
    }
    off[0] += blk * block * sa;
    off[1] += blk * block * sb;
    off[2] += blk * block * si;
    const int64_t n = std::min(block, inner - blk * block);
    const int64_t j1 = std::min(steps, (chunk + 1) * step_len);
    for (int64_t j = chunk * step_len; j < j1; ++j) {
      T* a0 = pa + off[0];
      T* bj = pb + off[1] + j * b_step;
      const I* ij = pi + off[2] + j * i_step;
      auto apply = [](T& av, T& bv) {
        if constexpr (kScatter) av = T(compute_t<T>(av) + compute_t<T>(bv));
        else bv = av;
      };
      if (si == 0) {  // one index for the whole run (index_select, index_add)
        T* aj = a0 + int64_t(*ij) * a_step;
        if (sa == 1 && sb == 1) {
          for (int64_t k = 0; k < n; ++k) apply(aj[k], bj[k]);
        } else {
          for (int64_t k = 0; k < n; ++k) apply(aj[k * sa], bj[k * sb]);
        }
      } else {
        for (int64_t k = 0; k < n; ++k) apply(a0[int64_t(ij[k * si]) * a_step + k * sa], bj[k * sb]);
      }
    }
  }
}

template <bool kScatter>
void run(const Tensor& a, const Tensor& b, const Tensor& index, int64_t dim, const char* op) {
  if (a.dtype() != b.dtype()) error(op, ": dtypes ", a.dtype(), " and ", b.dtype(), " differ");
  auto by_value = [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_index(index.dtype(), op, [&](auto itag) {
      index_loop<kScatter, T, typename decltype(itag)::type>(a, b, index, int(dim));
    });
  };
  if constexpr (kScatter) dispatch_numeric(a.dtype(), op, by_value);
  else dispatch_all(a.dtype(), op, by_value);
}

void index_select_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  run<false>(x, out, broadcast_index(index, out.shape(), int(dim)), dim, "index_select");
}

void index_add_kernel(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  run<true>(out, src, broadcast_index(index, src.shape(), int(dim)), dim, "index_add");
}

void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  run<false>(x, out, index, dim, "gather");
}

void scatter_add_kernel(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  run<true>(out, src, index, dim, "scatter_add");
}

FM_REGISTER_KERNEL(kernels::index_bounds, DeviceType::cpu, index_bounds_kernel);
FM_REGISTER_KERNEL(kernels::index_select, DeviceType::cpu, index_select_kernel);
FM_REGISTER_KERNEL(kernels::index_add, DeviceType::cpu, index_add_kernel);
FM_REGISTER_KERNEL(kernels::gather, DeviceType::cpu, gather_kernel);
FM_REGISTER_KERNEL(kernels::scatter_add, DeviceType::cpu, scatter_add_kernel);

}  // namespace
}  // namespace fm::cpu

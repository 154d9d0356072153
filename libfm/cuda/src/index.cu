// Gathers and scatters along one dim on the GPU.
// Gathers (index_select, gather): one thread per output element; whole rows
// for index_select along dim 0 of contiguous tensors.
// Scatters add in index order like the CPU, so results are bit-identical and
// deterministic, with no atomics:
// - index_add sorts the (index, position) pairs with CUB's stable radix sort;
//   one block per run of equal indices then adds the source rows of the run
//   in position order, its threads spread over the columns (the embedding
//   backward: coalesced rows of width d_model).
// - scatter_add walks each column along dim in one thread when dim is short;
//   otherwise it sorts (target element, source element) pairs and one thread
//   per target sums its run in order.
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>
#include <limits>

#include "fm/kernels/index.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::broadcast_index;
using kernels::compute_t;
using kernels::dispatch_index;
using kernels::IndexBounds;
using kernels::StridedPlan;
using kernels::Tag;
using kernels::without_dim;

// ---- index_bounds: per-block min/max, then one block over the partials.

constexpr int kWarp = 32;

// Thread 0 ends with the block's min and max.
__device__ void block_min_max(int64_t& lo, int64_t& hi) {
  __shared__ int64_t s_lo[kThreads / kWarp], s_hi[kThreads / kWarp];
  for (int off = kWarp / 2; off > 0; off /= 2) {
    lo = min(lo, __shfl_down_sync(0xffffffffu, lo, off));
    hi = max(hi, __shfl_down_sync(0xffffffffu, hi, off));
  }
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  if (lane == 0) {
    s_lo[warp] = lo;
    s_hi[warp] = hi;
  }
  __syncthreads();
  if (warp == 0) {
    const bool has = lane < int(blockDim.x / kWarp);
    lo = has ? s_lo[lane] : std::numeric_limits<int64_t>::max();
    hi = has ? s_hi[lane] : std::numeric_limits<int64_t>::min();
    for (int off = kWarp / 2; off > 0; off /= 2) {
      lo = min(lo, __shfl_down_sync(0xffffffffu, lo, off));
      hi = max(hi, __shfl_down_sync(0xffffffffu, hi, off));
    }
  }
}

// partial[2 b], partial[2 b + 1]: min and max over block b's elements.
template <class I>
__global__ void bounds_partial_kernel(const I* index, int64_t n, int64_t* partial) {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t v = index[i];
    lo = min(lo, v);
    hi = max(hi, v);
  }
  block_min_max(lo, hi);
  if (threadIdx.x == 0) {
    partial[2 * blockIdx.x] = lo;
    partial[2 * blockIdx.x + 1] = hi;
  }
}

__global__ void bounds_final_kernel(const int64_t* partial, int parts, int64_t* result) {
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int b = threadIdx.x; b < parts; b += blockDim.x) {
    lo = min(lo, partial[2 * b]);
    hi = max(hi, partial[2 * b + 1]);
  }
  block_min_max(lo, hi);
  if (threadIdx.x == 0) {
    result[0] = lo;
    result[1] = hi;
  }
}

// The one host sync of this file: the op needs the bounds on the host.
IndexBounds index_bounds(const Tensor& index) {
  if (index.numel() == 0) return {};
  const Tensor c = index.contiguous();
  const int64_t n = c.numel();
  const int parts = std::min(blocks_for(n), 1024);
  const Tensor scratch = make_tensor({2 * int64_t(parts) + 2}, DType::i64, c.device());
  int64_t* partial = static_cast<int64_t*>(scratch.data_ptr());
  int64_t* result = partial + 2 * parts;
  dispatch_index(c.dtype(), "index_bounds", [&](auto tag) {
    using I = typename decltype(tag)::type;
    bounds_partial_kernel<<<parts, kThreads, 0, stream()>>>(static_cast<const I*>(c.data_ptr()), n, partial);
    check_launch();
  });
  bounds_final_kernel<<<1, kThreads, 0, stream()>>>(partial, parts, result);
  check_launch();
  int64_t host[2];
  FM_CUDA_CHECK(cudaMemcpyAsync(host, result, sizeof(host), cudaMemcpyDeviceToHost, stream()));
  FM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return {host[0], host[1]};
}

// ---- views shared by the kernels (without_dim, broadcast_index: fm/kernels/index.h)

// t over `sizes` with the stride of dim d set to 0: its offsets leave d out.
Tensor flat_along(const Tensor& t, const Shape& sizes, int d) {
  Shape st;
  for (int i = 0; i < sizes.size(); ++i) st.push_back(i == d ? 0 : t.strides()[i]);
  return make_view(t, sizes, st, t.storage_offset());
}

// ---- gathers: b[p] = a[p with coordinate d = index[p]]

template <class T, class I>
__global__ void gather_kernel(StridedPlan<3> p, int64_t n, T* b, const T* a, const I* index, int64_t a_step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    b[o.v[1]] = a[o.v[0] + int64_t(index[o.v[2]]) * a_step];
  }
}

// `index` has b's shape (stride 0 where it is broadcast).
void gather_run(const Tensor& a, const Tensor& b, const Tensor& index, int d, const char* op) {
  if (a.dtype() != b.dtype()) error(op, ": dtypes ", a.dtype(), " and ", b.dtype(), " differ");
  const int64_t n = b.numel();
  const Tensor a0 = flat_along(a, b.shape(), d);
  const StridedPlan<3> plan(b.shape(), {&a0, &b, &index});
  const int64_t a_step = a.strides()[d];
  kernels::dispatch_all(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_index(index.dtype(), op, [&](auto itag) {
      using I = typename decltype(itag)::type;
      if (n == 0) return;
      gather_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(plan, n, static_cast<T*>(b.data_ptr()),
                                                              static_cast<const T*>(a.data_ptr()),
                                                              static_cast<const I*>(index.data_ptr()), a_step);
      check_launch();
    });
  });
}

// Whole rows of contiguous tensors (the embedding forward): a block copies
// each row as words V of 1 to 16 bytes, whatever the dtype.
template <class V, class I>
__global__ void select_rows_kernel(V* out, const V* x, const I* index, int64_t index_stride, int64_t rows,
                                   int64_t width) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const V* src = x + int64_t(index[r * index_stride]) * width;
    V* dst = out + r * width;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) dst[c] = src[c];
  }
}

// The widest word that divides the row and both base addresses.
template <class F>
void by_word(int64_t row_bytes, const void* a, const void* b, F&& f) {
  const uint64_t m = uint64_t(row_bytes) | reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b);
  if (m % 16 == 0) f(Tag<uint4>{});
  else if (m % 8 == 0) f(Tag<uint2>{});
  else if (m % 4 == 0) f(Tag<uint32_t>{});
  else if (m % 2 == 0) f(Tag<uint16_t>{});
  else f(Tag<uint8_t>{});
}

void index_select(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t rows = out.numel() == 0 ? 0 : out.size(0);
  const int64_t row_bytes = rows == 0 ? 0 : out.numel() / rows * int64_t(out.itemsize());
  // Short rows (a 1-D select) keep more threads busy in the element-wise gather.
  if (dim != 0 || !out.is_contiguous() || !x.is_contiguous() || x.dtype() != out.dtype() || row_bytes < 128) {
    gather_run(x, out, broadcast_index(index, out.shape(), int(dim)), int(dim), "index_select");
    return;
  }
  dispatch_index(index.dtype(), "index_select", [&](auto itag) {
    using I = typename decltype(itag)::type;
    by_word(row_bytes, out.data_ptr(), x.data_ptr(), [&](auto wtag) {
      using V = typename decltype(wtag)::type;
      const int64_t width = row_bytes / int64_t(sizeof(V));
      const int threads = int(std::min<int64_t>(kThreads, (width + kWarp - 1) / kWarp * kWarp));
      select_rows_kernel<<<int(std::min<int64_t>(rows, 1 << 20)), threads, 0, stream()>>>(
          static_cast<V*>(out.data_ptr()), static_cast<const V*>(x.data_ptr()),
          static_cast<const I*>(index.data_ptr()), index.strides()[0], rows, width);
      check_launch();
    });
  });
}

void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  gather_run(x, out, index, int(dim), "gather");
}

// ---- sorting helpers for the scatters

// Bits that hold every value in [0, max_value] (at least 1).
int bits_for(uint64_t max_value) {
  int bits = 1;
  while (bits < 64 && (max_value >> bits) != 0) ++bits;
  return bits;
}

// A scratch array of n elements of a 4- or 8-byte type, from the caching allocator.
template <class K>
Tensor scratch_of(int64_t n, Device device) {
  static_assert(sizeof(K) == 4 || sizeof(K) == 8);
  return make_tensor({n}, sizeof(K) == 4 ? DType::i32 : DType::i64, device);
}

template <class K>
K* ptr_of(const Tensor& t) {
  return static_cast<K*>(t.data_ptr());
}

// Stable: equal keys keep their input order, which the callers make the CPU's.
template <class Key>
void sort_pairs(const Key* keys_in, Key* keys_out, const int64_t* vals_in, int64_t* vals_out, int64_t n, int end_bit,
                Device device) {
  size_t bytes = 0;
  FM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys_in, keys_out, vals_in, vals_out, n, 0, end_bit,
                                                stream()));
  const Tensor temp = make_tensor({int64_t(std::max<size_t>(bytes, 1))}, DType::u8, device);
  FM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), bytes, keys_in, keys_out, vals_in, vals_out, n, 0,
                                                end_bit, stream()));
}

// Unsigned 32-bit keys when they fit, else 64-bit.
template <class F>
void by_key_width(uint64_t max_key, F&& f) {
  if (max_key <= std::numeric_limits<uint32_t>::max()) f(Tag<uint32_t>{});
  else f(Tag<uint64_t>{});
}

// ---- index_add: out[.., index[j], ..] += src[.., j, ..]

template <class I, class Key>
__global__ void index_keys_kernel(const I* index, int64_t stride, int64_t n, Key* keys, int64_t* pos) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    keys[j] = Key(index[j * stride]);
    pos[j] = j;
  }
}

constexpr int kRunThreads = 256;

// Blocks over sorted positions k (x) and column tiles (y); the first of each
// run of equal keys adds the run's source rows (positions pos[k..]) into out
// row keys[k], a chunk of blockDim positions at a time, each thread owning
// columns.
template <class T, class Key>
__global__ void index_add_runs_kernel(T* out, const T* src, const Key* keys, const int64_t* pos, int64_t n,
                                      int64_t cols, StridedPlan<2> cp, int64_t out_step, int64_t src_step) {
  using C = compute_t<T>;
  __shared__ int64_t rows[kRunThreads];
  for (int64_t k = blockIdx.x; k < n; k += gridDim.x) {
    const Key u = keys[k];
    if (k > 0 && keys[k - 1] == u) continue;  // inside a run: its first block does it
    for (int64_t start = k;; start += blockDim.x) {
      // Keys are sorted, so the run's part of this chunk is a prefix of it.
      const int64_t j = start + threadIdx.x;
      const bool same = j < n && keys[j] == u;
      const int count = __syncthreads_count(same);  // also fences the last chunk's reads of rows
      if (same) rows[threadIdx.x] = pos[j] * src_step;
      __syncthreads();
      for (int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.y) * blockDim.x) {
        const auto o = offsets_of(cp, c);
        T* dst = out + o.v[0] + int64_t(u) * out_step;
        const T* s = src + o.v[1];
        T acc = *dst;
#pragma unroll 4
        for (int q = 0; q < count; ++q) acc = T(C(acc) + C(s[rows[q]]));
        *dst = acc;
      }
      if (count < int(blockDim.x)) break;
    }
  }
}

void index_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (out.dtype() != src.dtype()) error("index_add: dtypes ", out.dtype(), " and ", src.dtype(), " differ");
  const int d = int(dim);
  const int64_t n = src.size(d);  // == index.numel()
  const int64_t cols = n == 0 ? 0 : src.numel() / n;
  const Tensor oc = without_dim(out, src.shape(), d), sc = without_dim(src, src.shape(), d);
  const StridedPlan<2> cp(oc.shape(), {&oc, &sc});
  const int64_t out_step = out.strides()[d], src_step = src.strides()[d], index_stride = index.strides()[0];
  kernels::dispatch_numeric(out.dtype(), "index_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_index(index.dtype(), "index_add", [&](auto itag) {
      using I = typename decltype(itag)::type;
      if (n == 0 || cols == 0) return;
      const uint64_t max_key = uint64_t(std::max<int64_t>(out.size(d) - 1, 0));
      by_key_width(max_key, [&](auto ktag) {
        using Key = typename decltype(ktag)::type;
        const Tensor keys_in = scratch_of<Key>(n, out.device()), keys = scratch_of<Key>(n, out.device());
        const Tensor pos_in = scratch_of<int64_t>(n, out.device()), pos = scratch_of<int64_t>(n, out.device());
        index_keys_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<const I*>(index.data_ptr()),
                                                                    index_stride, n, ptr_of<Key>(keys_in),
                                                                    ptr_of<int64_t>(pos_in));
        check_launch();
        sort_pairs(ptr_of<Key>(keys_in), ptr_of<Key>(keys), ptr_of<int64_t>(pos_in), ptr_of<int64_t>(pos), n,
                   bits_for(max_key), out.device());
        // Blocks over (sorted position, column tile): a few long rows still fill the GPU.
        const int threads = int(std::min<int64_t>(kRunThreads, (cols + kWarp - 1) / kWarp * kWarp));
        const int64_t tiles = (cols + threads - 1) / threads, gx = std::min<int64_t>(n, 65535);
        const dim3 grid(unsigned(gx), unsigned(std::min({tiles, std::max<int64_t>(1, 65536 / gx), int64_t(65535)})));
        index_add_runs_kernel<<<grid, threads, 0, stream()>>>(
            static_cast<T*>(out.data_ptr()), static_cast<const T*>(src.data_ptr()), ptr_of<Key>(keys),
            ptr_of<int64_t>(pos), n, cols, cp, out_step, src_step);
        check_launch();
      });
    });
  });
}

// ---- scatter_add: out[p with coordinate d = index[p]] += src[p]

// Short dims: one thread per column (every coordinate but d) walks d in
// order; columns write disjoint elements of out.
constexpr int64_t kMaxWalk = 32;

template <class T, class I>
__global__ void scatter_columns_kernel(StridedPlan<3> cp, int64_t cols, int64_t steps, T* out, const T* src,
                                       const I* index, int64_t out_step, int64_t src_step, int64_t index_step) {
  using C = compute_t<T>;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < cols; c += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(cp, c);
    T* base = out + o.v[0];
    const T* s = src + o.v[1];
    const I* ix = index + o.v[2];
    for (int64_t j = 0; j < steps; ++j) {
      T& dst = base[int64_t(ix[j * index_step]) * out_step];
      dst = T(C(dst) + C(s[j * src_step]));
    }
  }
}

// keys[i]: the element of out that element i of index (row-major) adds into;
// src_off[i]: the element of src it adds.
template <class I, class Key>
__global__ void scatter_keys_kernel(StridedPlan<3> p, int64_t n, const I* index, int64_t out_step, Key* keys,
                                    int64_t* src_off) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    keys[i] = Key(o.v[0] + int64_t(index[o.v[2]]) * out_step);
    src_off[i] = o.v[1];
  }
}

// One thread per sorted position; the first of each run sums it in order.
template <class T, class Key>
__global__ void scatter_runs_kernel(T* out, const T* src, const Key* keys, const int64_t* src_off, int64_t n) {
  using C = compute_t<T>;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    const Key u = keys[k];
    if (k > 0 && keys[k - 1] == u) continue;
    T acc = out[u];
    for (int64_t q = k; q < n && keys[q] == u; ++q) acc = T(C(acc) + C(src[src_off[q]]));
    out[u] = acc;
  }
}

// The largest element offset of t (strides are not negative).
int64_t last_offset(const Tensor& t) {
  int64_t off = 0;
  for (int i = 0; i < t.dim(); ++i) off += (t.size(i) - 1) * t.strides()[i];
  return off;
}

void scatter_add(const Tensor& out, int64_t dim, const Tensor& index, const Tensor& src) {
  if (out.dtype() != src.dtype()) error("scatter_add: dtypes ", out.dtype(), " and ", src.dtype(), " differ");
  const int d = int(dim);
  const Shape& shape = index.shape();
  const int64_t n = shape.numel(), steps = shape[d];
  const int64_t out_step = out.strides()[d];
  kernels::dispatch_numeric(out.dtype(), "scatter_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dispatch_index(index.dtype(), "scatter_add", [&](auto itag) {
      using I = typename decltype(itag)::type;
      if (n == 0) return;
      T* po = static_cast<T*>(out.data_ptr());
      const T* ps = static_cast<const T*>(src.data_ptr());
      const I* pi = static_cast<const I*>(index.data_ptr());
      if (steps <= kMaxWalk) {
        const Tensor oc = without_dim(out, shape, d), sc = without_dim(src, shape, d);
        const Tensor ic = without_dim(index, shape, d);
        const StridedPlan<3> cp(oc.shape(), {&oc, &sc, &ic});
        const int64_t cols = n / steps;
        scatter_columns_kernel<<<blocks_for(cols), kThreads, 0, stream()>>>(
            cp, cols, steps, po, ps, pi, out_step, src.strides()[d], index.strides()[d]);
        check_launch();
        return;
      }
      const Tensor o0 = flat_along(out, shape, d);
      const StridedPlan<3> p(shape, {&o0, &src, &index});
      const uint64_t max_key = uint64_t(last_offset(out));
      by_key_width(max_key, [&](auto ktag) {
        using Key = typename decltype(ktag)::type;
        const Tensor keys_in = scratch_of<Key>(n, out.device()), keys = scratch_of<Key>(n, out.device());
        const Tensor off_in = scratch_of<int64_t>(n, out.device()), off = scratch_of<int64_t>(n, out.device());
        scatter_keys_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(p, n, pi, out_step, ptr_of<Key>(keys_in),
                                                                      ptr_of<int64_t>(off_in));
        check_launch();
        sort_pairs(ptr_of<Key>(keys_in), ptr_of<Key>(keys), ptr_of<int64_t>(off_in), ptr_of<int64_t>(off), n,
                   bits_for(max_key), out.device());
        scatter_runs_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(po, ps, ptr_of<Key>(keys),
                                                                      ptr_of<int64_t>(off), n);
        check_launch();
      });
    });
  });
}

FM_REGISTER_KERNEL(kernels::index_bounds, DeviceType::cuda, index_bounds);
FM_REGISTER_KERNEL(kernels::index_select, DeviceType::cuda, index_select);
FM_REGISTER_KERNEL(kernels::index_add, DeviceType::cuda, index_add);
FM_REGISTER_KERNEL(kernels::gather, DeviceType::cuda, gather);
FM_REGISTER_KERNEL(kernels::scatter_add, DeviceType::cuda, scatter_add);

}  // namespace
}  // namespace fm::cuda

// Row reductions over a contiguous [rows, n] input, and column sums over the
// leading dim of [n, cols], on the GPU. As on the CPU, floating sums
// accumulate in f64 and integer sums in i64. The combining order is fixed
// (per-thread chains, a warp/block tree, then chunk partials added in order),
// so results are deterministic on a given device; no atomics.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "block_reduce.cuh"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;
using kernels::ReduceOp;

template <class O, class V>
__device__ __forceinline__ void store(O* p, V v) {
  if constexpr (std::is_same_v<O, bf16> || std::is_same_v<O, f16>) *p = O(float(v));
  else *p = O(v);
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

Tensor scratch(int64_t bytes, Device d) { return fm::empty({bytes}, TensorOptions(DType::u8).device(d)); }

// ---- the generic row reduction: load each element into an accumulator, combine, finish

// Each row is cut into `chunks` pieces of `chunk_len` elements; one warp
// (blockDim.x == 32, blockDim.y rows per block) or one block (blockDim.y == 1)
// reduces one piece.
struct RowJob {
  int64_t rows, n, chunks, chunk_len;
};

template <class S, class Acc, class Load, class Comb, class Fin, class O>
__global__ void row_reduce_kernel(RowJob job, const S* x, Load load, Comb comb, Acc identity, Fin fin, O* out,
                                  Acc* partial) {
  const int64_t item = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (item >= job.rows * job.chunks) return;  // whole warps (or the whole block) leave together
  const int64_t r = item / job.chunks;
  const int64_t i0 = (item % job.chunks) * job.chunk_len, i1 = min64(job.n, i0 + job.chunk_len);
  const S* row = x + r * job.n;
  const int64_t st = blockDim.x;
  // Four independent chains keep several loads in flight per thread.
  Acc a0 = identity, a1 = identity, a2 = identity, a3 = identity;
  int64_t i = i0 + threadIdx.x;
  for (; i + 3 * st < i1; i += 4 * st) {
    a0 = comb(a0, load(row[i], r, i));
    a1 = comb(a1, load(row[i + st], r, i + st));
    a2 = comb(a2, load(row[i + 2 * st], r, i + 2 * st));
    a3 = comb(a3, load(row[i + 3 * st], r, i + 3 * st));
  }
  for (; i < i1; i += st) a0 = comb(a0, load(row[i], r, i));
  const Acc a = row_reduce(comb(comb(a0, a1), comb(a2, a3)), comb, identity);
  if (threadIdx.x == 0) {
    if (job.chunks == 1) store(out + r, fin(a, r));
    else partial[item] = a;
  }
}

// Combines each row's chunk partials in chunk order.
template <class Acc, class Comb, class Fin, class O>
__global__ void finish_rows_kernel(int64_t rows, int64_t chunks, const Acc* partial, Comb comb, Fin fin, O* out) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    Acc a = partial[r * chunks];
    for (int64_t c = 1; c < chunks; ++c) a = comb(a, partial[r * chunks + c]);
    store(out + r, fin(a, r));
  }
}

template <class S, class Acc, class O, class Load, class Comb, class Fin>
void reduce_rows(const Tensor& x, O* out, Load load, Comb comb, Acc identity, Fin fin) {
  const int64_t rows = x.size(0), n = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  if (n <= 512) {  // short rows: a warp per row, 8 rows per block
    const RowJob job{rows, n, 1, n};
    row_reduce_kernel<<<unsigned((rows + 7) / 8), dim3(32, 8), 0, stream()>>>(job, px, load, comb, identity, fin, out,
                                                                              static_cast<Acc*>(nullptr));
    check_launch();
    return;
  }
  // A block per row; few long rows are split so that every multiprocessor
  // has work, and the pieces combined in order by a second kernel.
  const int threads = n >= 8192 ? 512 : 256;
  const int64_t target = 4 * int64_t(sm_count());
  int64_t chunks = 1;
  if (rows < target && n >= 32768) chunks = std::min((n + 16383) / 16384, (target + rows - 1) / rows);
  const int64_t chunk_len = (n + chunks - 1) / chunks;
  chunks = (n + chunk_len - 1) / chunk_len;
  const RowJob job{rows, n, chunks, chunk_len};
  Tensor partial;
  Acc* pp = nullptr;
  if (chunks > 1) {
    partial = scratch(rows * chunks * int64_t(sizeof(Acc)), x.device());
    pp = static_cast<Acc*>(partial.data_ptr());
  }
  row_reduce_kernel<<<unsigned(rows * chunks), threads, 0, stream()>>>(job, px, load, comb, identity, fin, out, pp);
  check_launch();
  if (chunks > 1) {
    finish_rows_kernel<<<blocks_for(rows), kThreads, 0, stream()>>>(rows, chunks, pp, comb, fin, out);
    check_launch();
  }
}

// ---- sum, mean, var

template <class S, class Acc>
struct LoadValue {
  __device__ Acc operator()(S v, int64_t, int64_t) const { return Acc(compute_t<S>(v)); }
};

// Squared deviation from the row's mean (var's second pass, as on the CPU).
template <class S, class Acc>
struct LoadSquaredDeviation {
  const double* mean;
  __device__ Acc operator()(S v, int64_t r, int64_t) const {
    const double d = double(compute_t<S>(v)) - mean[r];
    return Acc(d * d);
  }
};

struct FinSum {
  template <class A>
  __device__ A operator()(A a, int64_t) const { return a; }
};

struct FinMean {
  double n;
  template <class A>
  __device__ double operator()(A a, int64_t) const { return double(a) / n; }
};

struct FinVar {
  int64_t denom;
  template <class A>
  __device__ double operator()(A a, int64_t) const {
    return denom > 0 ? double(a) / double(denom) : std::numeric_limits<double>::quiet_NaN();
  }
};

// ---- max, min, argmax, argmin: the best (value, index) pair

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();  // the index of "no element yet"

template <class C>
struct Best {
  C v;
  int64_t i;
};

template <class C>
__device__ __forceinline__ Best<C> shfl_xor(Best<C> b, int mask) {
  return {cuda::shfl_xor(b.v, mask), cuda::shfl_xor(b.i, mask)};
}

// The CPU scans in order, keeps the first extreme value and stops at the
// first NaN. Order-free equivalent: a NaN beats any number, the lower index
// wins among NaNs and among equal values.
template <bool kMax, class C>
struct PickBest {
  __device__ Best<C> operator()(Best<C> a, Best<C> b) const { return takes(a, b) ? b : a; }
  __device__ static bool takes(const Best<C>& a, const Best<C>& b) {
    if (b.i == kNone) return false;
    if (a.i == kNone) return true;
    if constexpr (std::is_floating_point_v<C>) {
      const bool a_nan = isnan(a.v), b_nan = isnan(b.v);
      if (a_nan || b_nan) return b_nan && (!a_nan || b.i < a.i);
    }
    if (kMax ? b.v > a.v : b.v < a.v) return true;
    return b.v == a.v && b.i < a.i;
  }
};

template <class S>
struct LoadIndexed {
  __device__ Best<compute_t<S>> operator()(S v, int64_t, int64_t i) const { return {compute_t<S>(v), i}; }
};

struct FinValue {
  template <class C>
  __device__ C operator()(Best<C> b, int64_t) const { return b.v; }
};

struct FinIndex {
  template <class C>
  __device__ int64_t operator()(Best<C> b, int64_t) const { return b.i; }
};

template <class S, bool kMax>
void extreme(const Tensor& x, const Tensor& dst, bool arg) {
  using C = compute_t<S>;
  const Best<C> none{C(0), kNone};
  if (arg)
    reduce_rows<S>(x, static_cast<int64_t*>(dst.data_ptr()), LoadIndexed<S>{}, PickBest<kMax, C>{}, none, FinIndex{});
  else
    reduce_rows<S>(x, static_cast<S*>(dst.data_ptr()), LoadIndexed<S>{}, PickBest<kMax, C>{}, none, FinValue{});
}

template <class S>
void reduce_typed(ReduceOp op, const Tensor& out, const Tensor& x, int64_t correction) {
  constexpr bool is_float = std::is_floating_point_v<compute_t<S>>;
  using Acc = std::conditional_t<is_float, double, int64_t>;
  using SumOut = std::conditional_t<is_float, S, int64_t>;   // sum of integers: i64
  using MeanOut = std::conditional_t<is_float, S, double>;   // mean/var of integers: f64
  const int64_t rows = x.size(0), n = x.size(1);
  const bool arg = op == ReduceOp::argmax || op == ReduceOp::argmin;
  DType natural = dtype_of<S>::value;
  if (arg) natural = DType::i64;
  else if (op == ReduceOp::sum) natural = dtype_of<SumOut>::value;
  else if (op == ReduceOp::mean || op == ReduceOp::var) natural = dtype_of<MeanOut>::value;
  // Other output dtypes (the CPU kernel converts to any): reduce, then convert.
  const bool convert = out.dtype() != natural;
  const Tensor dst = convert ? fm::empty({rows}, TensorOptions(natural).device(x.device())) : out;
  switch (op) {
    case ReduceOp::sum:
      reduce_rows<S>(x, static_cast<SumOut*>(dst.data_ptr()), LoadValue<S, Acc>{}, SumOp{}, Acc(0), FinSum{});
      break;
    case ReduceOp::mean:
      reduce_rows<S>(x, static_cast<MeanOut*>(dst.data_ptr()), LoadValue<S, Acc>{}, SumOp{}, Acc(0),
                     FinMean{double(n)});
      break;
    case ReduceOp::var: {
      const Tensor mean = fm::empty({rows}, TensorOptions(DType::f64).device(x.device()));
      double* pm = static_cast<double*>(mean.data_ptr());
      reduce_rows<S>(x, pm, LoadValue<S, Acc>{}, SumOp{}, Acc(0), FinMean{double(n)});
      reduce_rows<S>(x, static_cast<MeanOut*>(dst.data_ptr()), LoadSquaredDeviation<S, Acc>{pm}, SumOp{}, Acc(0),
                     FinVar{n - correction});
      break;
    }
    case ReduceOp::max: extreme<S, true>(x, dst, false); break;
    case ReduceOp::min: extreme<S, false>(x, dst, false); break;
    case ReduceOp::argmax: extreme<S, true>(x, dst, true); break;
    case ReduceOp::argmin: extreme<S, false>(x, dst, true); break;
  }
  if (convert) kernels::copy(out.device(), out, dst);
}

void reduce(ReduceOp op, const Tensor& out, const Tensor& x, int64_t correction) {
  if (!x.is_contiguous() || x.dim() != 2) error("reduce: expects a contiguous [rows, n] input, got ", x.shape());
  if (x.size(0) == 0) return;
  if (x.size(1) == 0) {  // empty rows: sum 0, mean/var NaN
    kernels::fill(out.device(), out, op == ReduceOp::sum ? 0.0 : std::numeric_limits<double>::quiet_NaN());
    return;
  }
  kernels::dispatch_all(x.dtype(), "reduce",
                        [&](auto tag) { reduce_typed<typename decltype(tag)::type>(op, out, x, correction); });
}

// ---- column sums over the leading dim

// Block (32 columns, 8 row lanes) sums its columns over one chunk of rows;
// the row lanes are added in lane order. One chunk: the result; several: a
// partial [chunks, cols] that finish_cols_kernel adds in chunk order.
struct ColJob {
  int64_t n, cols, chunks, chunk_len;
  bool mean;
};

template <class Acc, class O>
__device__ __forceinline__ void store_column(O* out, Acc a, const ColJob& job) {
  // double for sums too: the CPU writes `mean ? sum / n : sum` (a double).
  store(out, job.mean ? double(a) / double(job.n) : double(a));
}

template <class S, class Acc, class O>
__global__ void column_sum_kernel(ColJob job, const S* x, Acc* partial, O* out) {
  __shared__ Acc lanes[8][32];
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = int64_t(blockIdx.y) * job.chunk_len, r1 = min64(job.n, r0 + job.chunk_len);
  Acc a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  if (c < job.cols) {
    const S* col = x + c;
    int64_t r = r0 + threadIdx.y;
    for (; r + 24 < r1; r += 32) {
      a0 += Acc(compute_t<S>(col[r * job.cols]));
      a1 += Acc(compute_t<S>(col[(r + 8) * job.cols]));
      a2 += Acc(compute_t<S>(col[(r + 16) * job.cols]));
      a3 += Acc(compute_t<S>(col[(r + 24) * job.cols]));
    }
    for (; r < r1; r += 8) a0 += Acc(compute_t<S>(col[r * job.cols]));
  }
  lanes[threadIdx.y][threadIdx.x] = (a0 + a1) + (a2 + a3);
  __syncthreads();
  if (threadIdx.y != 0 || c >= job.cols) return;
  Acc a = lanes[0][threadIdx.x];
  for (int l = 1; l < 8; ++l) a += lanes[l][threadIdx.x];
  if (job.chunks == 1) store_column(out + c, a, job);
  else partial[blockIdx.y * job.cols + c] = a;
}

template <class Acc, class O>
__global__ void finish_cols_kernel(ColJob job, const Acc* partial, O* out) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < job.cols; c += step) {
    Acc a = partial[c];
    for (int64_t k = 1; k < job.chunks; ++k) a += partial[k * job.cols + c];
    store_column(out + c, a, job);
  }
}

template <class S>
void reduce_leading_typed(const Tensor& out, const Tensor& x, bool mean) {
  constexpr bool is_float = std::is_floating_point_v<compute_t<S>>;
  using Acc = std::conditional_t<is_float, double, int64_t>;
  using O = std::conditional_t<is_float, S, int64_t>;
  using MeanO = std::conditional_t<is_float, S, double>;
  const int64_t n = x.size(0), cols = x.size(1);
  const DType natural = mean ? dtype_of<MeanO>::value : dtype_of<O>::value;
  const bool convert = out.dtype() != natural;
  const Tensor dst = convert ? fm::empty({cols}, TensorOptions(natural).device(x.device())) : out;

  // Enough (column tile, row chunk) blocks to fill the GPU, at least 64 rows each.
  const int64_t tiles = (cols + 31) / 32;
  const int64_t target = 4 * int64_t(sm_count());
  int64_t chunks = std::min<int64_t>({(target + tiles - 1) / tiles, (n + 63) / 64, 65535});
  chunks = std::max<int64_t>(chunks, 1);
  const int64_t chunk_len = (n + chunks - 1) / chunks;
  chunks = (n + chunk_len - 1) / chunk_len;
  const ColJob job{n, cols, chunks, chunk_len, mean};
  Tensor partial;
  Acc* pp = nullptr;
  if (chunks > 1) {
    partial = scratch(chunks * cols * int64_t(sizeof(Acc)), x.device());
    pp = static_cast<Acc*>(partial.data_ptr());
  }
  const S* px = static_cast<const S*>(x.data_ptr());
  auto run = [&](auto* po) {
    column_sum_kernel<<<dim3(unsigned(tiles), unsigned(chunks)), dim3(32, 8), 0, stream()>>>(job, px, pp, po);
    check_launch();
    if (chunks > 1) {
      finish_cols_kernel<<<blocks_for(cols), kThreads, 0, stream()>>>(job, static_cast<const Acc*>(pp), po);
      check_launch();
    }
  };
  if (mean) run(static_cast<MeanO*>(dst.data_ptr()));
  else run(static_cast<O*>(dst.data_ptr()));
  if (convert) kernels::copy(out.device(), out, dst);
}

void reduce_leading(const Tensor& out, const Tensor& x, bool mean) {
  if (!x.is_contiguous() || x.dim() != 2)
    error("reduce_leading: expects a contiguous [n, cols] input, got ", x.shape());
  if (x.size(1) == 0) return;
  if (x.size(0) == 0) {  // as the CPU: sums of nothing are 0, means NaN
    kernels::fill(out.device(), out, mean ? std::numeric_limits<double>::quiet_NaN() : 0.0);
    return;
  }
  kernels::dispatch_all(x.dtype(), "reduce",
                        [&](auto tag) { reduce_leading_typed<typename decltype(tag)::type>(out, x, mean); });
}

FM_REGISTER_KERNEL(kernels::reduce, DeviceType::cuda, reduce);
FM_REGISTER_KERNEL(kernels::reduce_leading, DeviceType::cuda, reduce_leading);

}  // namespace
}  // namespace fm::cuda

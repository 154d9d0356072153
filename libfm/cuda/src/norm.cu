// Softmax, layer_norm and rms_norm on the GPU: a warp per short row, a block
// per longer row. Rows that fit are held in registers between passes; longer
// ones are read again in each pass (mostly from L2). Statistics are in the
// compute type (f32 for f32/bf16/f16, f64 for f64), as on the CPU. The weight
// and bias gradients are summed per block into an f32/f64 partial [blocks, n]
// and the partials added in block order: deterministic, no atomics.
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "block_reduce.cuh"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/kernels/norm.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;

template <int V>
using Vpt = std::integral_constant<int, V>;

// The part of one row a thread owns: elements tid, tid + nt, ... (so a warp
// reads consecutive elements). kVpt > 0: up to kVpt values held in registers;
// kVpt == 0: read from memory on each pass.
template <class S, int kVpt>
struct RowSlice {
  using C = compute_t<S>;
  const S* p;
  int64_t n;
  C v[kVpt > 0 ? kVpt : 1];

  __device__ __forceinline__ RowSlice(const S* row, int64_t len) : p(row), n(len) {
    if constexpr (kVpt > 0) {
#pragma unroll
      for (int k = 0; k < kVpt; ++k) {
        const int i = int(threadIdx.x + k * blockDim.x);  // cached rows are short: 32-bit indices
        v[k] = i < n ? C(p[i]) : C(0);
      }
    }
  }
  // f(k, i, x[i]) for each owned element i; k is its register slot (0 when uncached).
  template <class F>
  __device__ __forceinline__ void each(F&& f) const {
    if constexpr (kVpt > 0) {
#pragma unroll
      for (int k = 0; k < kVpt; ++k) {
        const int i = int(threadIdx.x + k * blockDim.x);
        if (i < n) f(k, i, v[k]);
      }
    } else {
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) f(0, i, C(p[i]));
    }
  }
  // The value of element i held in slot k (another slice's each() supplies k, i).
  __device__ __forceinline__ C at(int k, int64_t i) const {
    if constexpr (kVpt > 0) return v[k];
    else return C(p[i]);
  }
};

template <class C>
constexpr C kNegInf = -std::numeric_limits<C>::infinity();

// Calls f(Vpt<k>{}, block) with the layout for rows of n elements: a warp per
// row (8 rows per block) while a lane holds at most kMaxVpt values, then a
// block of 64..512 threads per row, then (n > 512 * kMaxVpt) an uncached
// block of 1024. Cached kernels are bounded to 512 threads (128 registers).
template <int kMaxVpt, class F>
void with_layout(int64_t n, F&& f) {
  const dim3 warps(32, 8);
  if (n <= 32) return f(Vpt<1>{}, warps);
  if (n <= 64) return f(Vpt<2>{}, warps);
  if constexpr (kMaxVpt >= 4) {
    if (n <= 128) return f(Vpt<4>{}, warps);
  }
  if constexpr (kMaxVpt >= 8) {
    if (n <= 256) return f(Vpt<8>{}, warps);
  }
  if constexpr (kMaxVpt >= 16) {
    if (n <= 512) return f(Vpt<16>{}, warps);
  }
  if (n <= 512 * kMaxVpt) {
    unsigned threads = 64;
    while (threads * kMaxVpt < n) threads *= 2;
    return f(Vpt<kMaxVpt>{}, dim3(threads));
  }
  return f(Vpt<0>{}, dim3(1024));
}

unsigned row_blocks(int64_t rows, const dim3& block) { return unsigned((rows + block.y - 1) / block.y); }

void check_rows(const char* op, const Tensor& t) {
  if (!t.is_contiguous() || t.dim() != 2) error(op, ": expects a contiguous [rows, n] tensor, got ", t.shape());
}

// ---- softmax

template <class S, int kVpt>
__global__ void __launch_bounds__(kVpt > 0 ? 512 : 1024)
    softmax_forward_kernel(S* y, const S* x, int64_t rows, int64_t n, bool is_log) {
  using C = compute_t<S>;
  const int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (r >= rows) return;  // whole warps (or the whole block) leave together
  const RowSlice<S, kVpt> xs(x + r * n, n);
  C m, s;
  if constexpr (kVpt > 0) {  // max, then the sum of exp, as on the CPU
    m = kNegInf<C>;
    xs.each([&](int, int64_t, C v) { m = v > m ? v : m; });
    m = row_reduce(m, MaxOp{}, kNegInf<C>);
    s = 0;
    xs.each([&](int, int64_t, C v) { s += exp(v - m); });
    s = row_reduce(s, SumOp{}, C(0));
  } else {  // one online pass over memory instead of two
    MaxExpSum<C> st{kNegInf<C>, C(0)};
    xs.each([&](int, int64_t, C v) { st.push(v); });
    st = row_reduce(st, MaxExpSumOp{}, MaxExpSum<C>{kNegInf<C>, C(0)});
    m = st.m;
    s = st.s;
  }
  S* yr = y + r * n;
  if (is_log) {
    const C shift = m + log(s);
    xs.each([&](int, int64_t i, C v) { yr[i] = S(v - shift); });
  } else {
    const C inv = C(1) / s;
    xs.each([&](int, int64_t i, C v) { yr[i] = S(exp(v - m) * inv); });
  }
}

template <class S, int kVpt>
__global__ void __launch_bounds__(kVpt > 0 ? 512 : 1024)
    softmax_backward_kernel(S* dx, const S* dy, const S* y, int64_t rows, int64_t n, bool is_log) {
  using C = compute_t<S>;
  const int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (r >= rows) return;
  const RowSlice<S, kVpt> g(dy + r * n, n), ys(y + r * n, n);
  S* d = dx + r * n;
  C s = 0;
  if (is_log) {  // dy - exp(y) * sum(dy)
    g.each([&](int, int64_t, C gv) { s += gv; });
    s = row_reduce(s, SumOp{}, C(0));
    g.each([&](int k, int64_t i, C gv) { d[i] = S(gv - exp(ys.at(k, i)) * s); });
  } else {  // y * (dy - sum(dy * y))
    g.each([&](int k, int64_t i, C gv) { s += gv * ys.at(k, i); });
    s = row_reduce(s, SumOp{}, C(0));
    g.each([&](int k, int64_t i, C gv) { d[i] = S(ys.at(k, i) * (gv - s)); });
  }
}

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  check_rows("softmax", x);
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0 || n == 0) return;
  kernels::dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using S = typename decltype(tag)::type;
    with_layout<16>(n, [&](auto vpt, dim3 block) {
      softmax_forward_kernel<S, decltype(vpt)::value><<<row_blocks(rows, block), block, 0, stream()>>>(
          static_cast<S*>(y.data_ptr()), static_cast<const S*>(x.data_ptr()), rows, n, log);
      check_launch();
    });
  });
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  check_rows("softmax_backward", y);
  const int64_t rows = y.size(0), n = y.size(1);
  if (rows == 0 || n == 0) return;
  kernels::dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using S = typename decltype(tag)::type;
    with_layout<16>(n, [&](auto vpt, dim3 block) {
      softmax_backward_kernel<S, decltype(vpt)::value><<<row_blocks(rows, block), block, 0, stream()>>>(
          static_cast<S*>(dx.data_ptr()), static_cast<const S*>(dy.data_ptr()), static_cast<const S*>(y.data_ptr()),
          rows, n, log);
      check_launch();
    });
  });
}

// ---- layer_norm and rms_norm (rms: no mean subtraction, no bias)

template <class T>
T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

template <class S>
struct NormForward {
  using C = compute_t<S>;
  S* y;
  C* mean;  // may be null
  C* rstd;
  const S *x, *w, *b;  // w, b may be null
  int64_t rows, n;
  C eps;
  bool rms;
};

template <class S, int kVpt>
__global__ void __launch_bounds__(kVpt > 0 ? 512 : 1024) norm_forward_kernel(NormForward<S> a) {
  using C = compute_t<S>;
  const int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  if (r >= a.rows) return;
  const RowSlice<S, kVpt> xs(a.x + r * a.n, a.n);
  C mu = 0;
  if (!a.rms) {
    C s = 0;
    xs.each([&](int, int64_t, C v) { s += v; });
    mu = row_reduce(s, SumOp{}, C(0)) / C(a.n);
  }
  // Second pass around the mean: no cancellation in the variance.
  C ss = 0;
  xs.each([&](int, int64_t, C v) { ss += (v - mu) * (v - mu); });
  const C rs = C(1) / sqrt(row_reduce(ss, SumOp{}, C(0)) / C(a.n) + a.eps);
  if (threadIdx.x == 0) {
    if (a.mean) a.mean[r] = mu;
    a.rstd[r] = rs;
  }
  S* yr = a.y + r * a.n;
  xs.each([&](int, int64_t i, C v) {
    C o = (v - mu) * rs;
    if (a.w) o *= C(a.w[i]);
    if (a.b) o += C(a.b[i]);
    yr[i] = S(o);
  });
}

template <class S>
void norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                  const Tensor& bias, double eps, bool rms) {
  using C = compute_t<S>;
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0) return;
  const NormForward<S> a{static_cast<S*>(y.data_ptr()), ptr_or_null<C>(mean), static_cast<C*>(rstd.data_ptr()),
                         static_cast<const S*>(x.data_ptr()), ptr_or_null<const S>(weight),
                         ptr_or_null<const S>(bias), rows, n, C(eps), rms};
  with_layout<16>(n, [&](auto vpt, dim3 block) {
    norm_forward_kernel<S, decltype(vpt)::value><<<row_blocks(rows, block), block, 0, stream()>>>(a);
    check_launch();
  });
}

template <class S>
struct NormBackward {
  using C = compute_t<S>;
  S* dx;               // may be null
  C *part_w, *part_b;  // [gridDim.x, n] partial dweight/dbias, or null
  const S *dy, *x, *w;  // w may be null
  const C *mean, *rstd;  // mean null for rms
  int64_t rows, n;
};

// Each warp (or block) walks rows walker, walker + walkers, ...: dx row by
// row; the dweight/dbias terms of the columns a thread owns are summed in its
// registers (uncached: in its block's partial row), then the warps of a
// block added in warp order into the block's partial row.
template <class S, int kVpt>
__global__ void __launch_bounds__(kVpt > 0 ? 512 : 1024) norm_backward_kernel(NormBackward<S> a) {
  using C = compute_t<S>;
  constexpr int kSlots = kVpt > 0 ? kVpt : 1;
  const int64_t n = a.n;
  const int64_t walker = int64_t(blockIdx.x) * blockDim.y + threadIdx.y, walkers = int64_t(gridDim.x) * blockDim.y;
  C* pw = a.part_w ? a.part_w + blockIdx.x * n : nullptr;
  C* pb = a.part_b ? a.part_b + blockIdx.x * n : nullptr;
  C acc_w[kSlots] = {}, acc_b[kSlots] = {};
  if constexpr (kVpt == 0) {  // blockDim.y == 1: each thread owns its columns of the block's partial rows
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      if (pw) pw[i] = 0;
      if (pb) pb[i] = 0;
    }
  }
  for (int64_t r = walker; r < a.rows; r += walkers) {
    const RowSlice<S, kVpt> xs(a.x + r * n, n), gs(a.dy + r * n, n);
    const C mu = a.mean ? a.mean[r] : C(0), rs = a.rstd[r];
    if (a.dx) {  // rs * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight
      C sum_g = 0, sum_gx = 0;
      gs.each([&](int k, int64_t i, C gv) {
        const C g = a.w ? gv * C(a.w[i]) : gv;
        sum_g += g;
        sum_gx += g * (xs.at(k, i) - mu) * rs;
      });
      const C mean_g = a.mean ? row_reduce(sum_g, SumOp{}, C(0)) / C(n) : C(0);
      const C mean_gx = row_reduce(sum_gx, SumOp{}, C(0)) / C(n);
      S* d = a.dx + r * n;
      gs.each([&](int k, int64_t i, C gv) {
        const C g = a.w ? gv * C(a.w[i]) : gv;
        d[i] = S(rs * (g - mean_g - (xs.at(k, i) - mu) * rs * mean_gx));
      });
    }
    if (pw) {
      gs.each([&](int k, int64_t i, C gv) {
        const C t = gv * (xs.at(k, i) - mu) * rs;
        if constexpr (kVpt > 0) acc_w[k] += t;
        else pw[i] += t;
      });
    }
    if (pb) {
      gs.each([&](int k, int64_t i, C gv) {
        if constexpr (kVpt > 0) acc_b[k] += gv;
        else pb[i] += gv;
      });
    }
  }
  if constexpr (kVpt > 0) {
    if (blockDim.y == 1) {  // a block per row: its threads own distinct columns
#pragma unroll
      for (int k = 0; k < kVpt; ++k) {
        const int64_t i = threadIdx.x + int64_t(k) * blockDim.x;
        if (i < n) {
          if (pw) pw[i] = acc_w[k];
          if (pb) pb[i] = acc_b[k];
        }
      }
    } else {  // a warp per row: add the warps' sums of each column in warp order
      __shared__ C lanes[2][8][32];
#pragma unroll
      for (int k = 0; k < kVpt; ++k) {
        lanes[0][threadIdx.y][threadIdx.x] = acc_w[k];
        lanes[1][threadIdx.y][threadIdx.x] = acc_b[k];
        __syncthreads();
        const int64_t i = threadIdx.x + int64_t(k) * 32;
        if (threadIdx.y < 2 && i < n) {
          C* part = threadIdx.y == 0 ? pw : pb;
          if (part) {
            C s = lanes[threadIdx.y][0][threadIdx.x];
            for (unsigned w = 1; w < blockDim.y; ++w) s += lanes[threadIdx.y][w][threadIdx.x];
            part[i] = s;
          }
        }
        __syncthreads();
      }
    }
  }
}

// out[i] = sum over blocks of part[b, i], in block order within each of 16
// lanes, then the lanes in order.
template <class S>
__global__ void sum_partials_kernel(S* out, const compute_t<S>* part, int64_t blocks, int64_t n) {
  using C = compute_t<S>;
  __shared__ C lanes[16][32];
  const int64_t i = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t per = (blocks + 15) / 16, b0 = threadIdx.y * per, b1 = b0 + per < blocks ? b0 + per : blocks;
  C s = 0;
  if (i < n)
    for (int64_t b = b0; b < b1; ++b) s += part[b * n + i];
  lanes[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || i >= n) return;
  for (int l = 1; l < 16; ++l) s += lanes[l][threadIdx.x];
  out[i] = S(s);
}

template <class S>
void norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy, const Tensor& x,
                   const Tensor& mean, const Tensor& rstd, const Tensor& weight, bool rms) {
  using C = compute_t<S>;
  const int64_t rows = x.size(0), n = x.size(1);
  if (n == 0) return;
  if (rows == 0) {  // as the CPU: parameter gradients of no rows are zero
    if (dweight.defined()) kernels::fill(dweight.device(), dweight, 0.0);
    if (dbias.defined()) kernels::fill(dbias.device(), dbias, 0.0);
    return;
  }
  // Four values per slot (x, dy and the two gradient sums): fewer slots than the forward.
  with_layout<sizeof(C) == 8 ? 4 : 8>(n, [&](auto vpt, dim3 block) {
    auto kernel = norm_backward_kernel<S, decltype(vpt)::value>;
    // As many blocks as fit at once (at most one per row group): each walks
    // several rows, keeping few partial rows to add up.
    int per_sm = 0;
    FM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, int(block.x * block.y), 0));
    const int64_t blocks = std::max<int64_t>(
        1, std::min<int64_t>(row_blocks(rows, block), int64_t(std::max(per_sm, 1)) * sm_count()));
    const TensorOptions stat = TensorOptions(dtype_of<C>::value).device(x.device());
    Tensor part_w, part_b;
    if (dweight.defined()) part_w = fm::empty({blocks, n}, stat);
    if (dbias.defined()) part_b = fm::empty({blocks, n}, stat);
    const NormBackward<S> a{ptr_or_null<S>(dx),
                            ptr_or_null<C>(part_w),
                            ptr_or_null<C>(part_b),
                            static_cast<const S*>(dy.data_ptr()),
                            static_cast<const S*>(x.data_ptr()),
                            ptr_or_null<const S>(weight),
                            rms ? nullptr : static_cast<const C*>(mean.data_ptr()),
                            static_cast<const C*>(rstd.data_ptr()),
                            rows,
                            n};
    kernel<<<unsigned(blocks), block, 0, stream()>>>(a);
    check_launch();
    for (const auto& [out, part] : {std::pair{&dweight, &part_w}, std::pair{&dbias, &part_b}}) {
      if (!out->defined()) continue;
      sum_partials_kernel<S><<<unsigned((n + 31) / 32), dim3(32, 16), 0, stream()>>>(
          static_cast<S*>(out->data_ptr()), static_cast<const C*>(part->data_ptr()), blocks, n);
      check_launch();
    }
  });
}

void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                        const Tensor& bias, double eps) {
  check_rows("layer_norm", x);
  kernels::dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    norm_forward<typename decltype(tag)::type>(y, mean, rstd, x, weight, bias, eps, false);
  });
}

void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight) {
  check_rows("layer_norm_backward", x);
  kernels::dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    norm_backward<typename decltype(tag)::type>(dx, dweight, dbias, dy, x, mean, rstd, weight, false);
  });
}

void rms_norm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight, double eps) {
  check_rows("rms_norm", x);
  kernels::dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    norm_forward<typename decltype(tag)::type>(y, Tensor(), rstd, x, weight, Tensor(), eps, true);
  });
}

void rms_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                       const Tensor& weight) {
  check_rows("rms_norm_backward", x);
  kernels::dispatch_float(x.dtype(), "rms_norm_backward", [&](auto tag) {
    norm_backward<typename decltype(tag)::type>(dx, dweight, Tensor(), dy, x, Tensor(), rstd, weight, true);
  });
}

FM_REGISTER_KERNEL(kernels::softmax_forward, DeviceType::cuda, softmax_forward);
FM_REGISTER_KERNEL(kernels::softmax_backward, DeviceType::cuda, softmax_backward);
FM_REGISTER_KERNEL(kernels::layer_norm_forward, DeviceType::cuda, layer_norm_forward);
FM_REGISTER_KERNEL(kernels::layer_norm_backward, DeviceType::cuda, layer_norm_backward);
FM_REGISTER_KERNEL(kernels::rms_norm_forward, DeviceType::cuda, rms_norm_forward);
FM_REGISTER_KERNEL(kernels::rms_norm_backward, DeviceType::cuda, rms_norm_backward);

}  // namespace
}  // namespace fm::cuda

// Nearest and bilinear resizing on the GPU, with the shared source-index rules
// of fm/kernels/conv.h. Forward: one thread per output. Backward gathers:
// one thread per input pixel sums the outputs that read it, in the CPU's
// order, so no atomics. The outputs reading input row i form one range, as
// the source index never decreases along an axis; a small kernel finds each
// axis's ranges by binary search first.
#include "fm/kernels/conv.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::LinearTap;
using kernels::planes_of;
using kernels::Planes;
using kernels::UpsampleMode;

template <class T>
__global__ void forward_kernel(UpsampleMode mode, Planes p, T* y, const T* x) {
  const int64_t n = p.count * p.out_h * p.out_w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = e % p.out_w, oh = e / p.out_w % p.out_h, plane = e / (p.out_h * p.out_w);
    const T* src = x + plane * p.h * p.w;
    if (mode == UpsampleMode::nearest) {
      y[e] = src[kernels::nearest_source(oh, p.h, p.out_h) * p.w + kernels::nearest_source(ow, p.w, p.out_w)];
      continue;
    }
    const LinearTap<T> a = kernels::linear_source<T>(oh, p.h, p.out_h), b = kernels::linear_source<T>(ow, p.w, p.out_w);
    const T a1 = a.w1, a0 = T(1) - a1, b1 = b.w1, b0 = T(1) - b1;
    const T* row0 = src + a.i0 * p.w;
    const T* row1 = src + a.i1 * p.w;
    y[e] = a0 * (b0 * row0[b.i0] + b1 * row0[b.i1]) + a1 * (b0 * row1[b.i0] + b1 * row1[b.i1]);
  }
}

// The first source index output o reads along an axis (i0 for bilinear).
template <class T>
__device__ __forceinline__ int64_t first_source(UpsampleMode mode, int64_t o, int64_t in, int64_t out) {
  return mode == UpsampleMode::nearest ? kernels::nearest_source(o, in, out) : kernels::linear_source<T>(o, in, out).i0;
}

// The first output whose source index is >= s (out if none).
template <class T>
__device__ int64_t first_output_from(UpsampleMode mode, int64_t s, int64_t in, int64_t out) {
  int64_t lo = 0, hi = out;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (first_source<T>(mode, mid, in, out) >= s) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// ranges[2 i], ranges[2 i + 1]: the outputs [lo, hi) that read input i of an
// axis. Bilinear output o reads i0(o) and i0(o) + 1 (or i0 at the edge), so
// input i is read by the outputs with i0 in {i - 1, i}.
template <class T>
__global__ void ranges_kernel(UpsampleMode mode, int64_t in, int64_t out, int64_t* ranges) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < in; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t first = mode == UpsampleMode::nearest ? i : i - 1;
    ranges[2 * i] = first_output_from<T>(mode, first, in, out);
    ranges[2 * i + 1] = first_output_from<T>(mode, i + 1, in, out);
  }
}

template <class T>
__global__ void backward_kernel(UpsampleMode mode, Planes p, T* dx, const T* dy, const int64_t* rows,
                                const int64_t* cols) {
  const int64_t n = p.count * p.h * p.w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = e % p.w, h = e / p.w % p.h, plane = e / (p.h * p.w);
    const int64_t oh0 = rows[2 * h], oh1 = rows[2 * h + 1], ow0 = cols[2 * w], ow1 = cols[2 * w + 1];
    const T* src = dy + plane * p.out_h * p.out_w;
    T acc = 0;
    if (mode == UpsampleMode::nearest) {
      for (int64_t oh = oh0; oh < oh1; ++oh)
        for (int64_t ow = ow0; ow < ow1; ++ow) acc += src[oh * p.out_w + ow];
    } else {
      // The CPU adds each output's four terms in the order (i0, i0), (i0, i1),
      // (i1, i0), (i1, i1) of (row, column); keep the terms that land here.
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const LinearTap<T> a = kernels::linear_source<T>(oh, p.h, p.out_h);
        const T a1 = a.w1, a0 = T(1) - a1;
        for (int64_t ow = ow0; ow < ow1; ++ow) {
          const LinearTap<T> b = kernels::linear_source<T>(ow, p.w, p.out_w);
          const T b1 = b.w1, b0 = T(1) - b1, g = src[oh * p.out_w + ow];
          if (a.i0 == h) {
            if (b.i0 == w) acc += a0 * b0 * g;
            if (b.i1 == w) acc += a0 * b1 * g;
          }
          if (a.i1 == h) {
            if (b.i0 == w) acc += a1 * b0 * g;
            if (b.i1 == w) acc += a1 * b1 * g;
          }
        }
      }
    }
    dx[e] = acc;
  }
}

// f32 or f64 (data<T>() names the dtype otherwise).
template <class F>
void by_dtype(DType t, F&& f) {
  if (t == DType::f64) f(kernels::Tag<double>{});
  else f(kernels::Tag<float>{});
}

void upsample_forward(UpsampleMode mode, const Tensor& y, const Tensor& x) {
  const Planes p = planes_of(x, y);
  const int64_t n = p.count * p.out_h * p.out_w;
  if (n == 0) return;
  by_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(mode, p, y.data<T>(), x.data<T>());
    check_launch();
  });
}

void upsample_backward(UpsampleMode mode, const Tensor& dx, const Tensor& dy) {
  const Planes p = planes_of(dx, dy);
  const int64_t n = p.count * p.h * p.w;
  if (n == 0) return;
  const Tensor ranges = make_tensor({2 * (p.h + p.w)}, DType::i64, dx.device());
  int64_t* rows = static_cast<int64_t*>(ranges.data_ptr());
  int64_t* cols = rows + 2 * p.h;
  by_dtype(dx.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    ranges_kernel<T><<<blocks_for(p.h), kThreads, 0, stream()>>>(mode, p.h, p.out_h, rows);
    check_launch();
    ranges_kernel<T><<<blocks_for(p.w), kThreads, 0, stream()>>>(mode, p.w, p.out_w, cols);
    check_launch();
    backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(mode, p, dx.data<T>(), dy.data<T>(), rows, cols);
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::upsample_forward, DeviceType::cuda, upsample_forward);
FM_REGISTER_KERNEL(kernels::upsample_backward, DeviceType::cuda, upsample_backward);

}  // namespace
}  // namespace fm::cuda

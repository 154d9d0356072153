// Average pooling on the GPU: one thread per output (forward) or per input
// pixel (backward, a gather over the windows that cover it, so no atomics).
// Both sum in the CPU's order.
#include "fm/kernels/conv.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::planes_of;
using kernels::Planes;
using kernels::PoolGeometry;

template <class T>
__global__ void forward_kernel(PoolGeometry g, Planes p, T* y, const T* x) {
  const T scale = T(1) / T(g.kernel * g.kernel);
  const int64_t n = p.count * p.out_h * p.out_w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = e % p.out_w, oh = e / p.out_w % p.out_h, plane = e / (p.out_h * p.out_w);
    const int64_t h0 = oh * g.stride - g.padding, w0 = ow * g.stride - g.padding;
    const int64_t h_lo = h0 > 0 ? h0 : 0, h_hi = h0 + g.kernel < p.h ? h0 + g.kernel : p.h;
    const int64_t w_lo = w0 > 0 ? w0 : 0, w_hi = w0 + g.kernel < p.w ? w0 + g.kernel : p.w;
    const T* src = x + plane * p.h * p.w;
    T acc = 0;
    for (int64_t h = h_lo; h < h_hi; ++h)
      for (int64_t w = w_lo; w < w_hi; ++w) acc += src[h * p.w + w];
    y[e] = acc * scale;
  }
}

// The outputs o whose window [o * stride - pad, + kernel) holds input i.
struct Range {
  int64_t lo, hi;
};
__device__ __forceinline__ Range covering(int64_t i, int64_t out, const PoolGeometry& g) {
  const int64_t first = i + g.padding - g.kernel + 1;  // o * stride >= first
  const int64_t lo = first <= 0 ? 0 : (first + g.stride - 1) / g.stride;
  const int64_t hi = (i + g.padding) / g.stride + 1;  // o * stride <= i + pad
  return {lo, hi < out ? hi : out};
}

template <class T>
__global__ void backward_kernel(PoolGeometry g, Planes p, T* dx, const T* dy) {
  const T scale = T(1) / T(g.kernel * g.kernel);
  const int64_t n = p.count * p.h * p.w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = e % p.w, h = e / p.w % p.h, plane = e / (p.h * p.w);
    const Range rh = covering(h, p.out_h, g), rw = covering(w, p.out_w, g);
    const T* src = dy + plane * p.out_h * p.out_w;
    T acc = 0;
    for (int64_t oh = rh.lo; oh < rh.hi; ++oh)
      for (int64_t ow = rw.lo; ow < rw.hi; ++ow) acc += src[oh * p.out_w + ow] * scale;
    dx[e] = acc;
  }
}

// f32 or f64 (data<T>() names the dtype otherwise).
template <class F>
void by_dtype(DType t, F&& f) {
  if (t == DType::f64) f(kernels::Tag<double>{});
  else f(kernels::Tag<float>{});
}

void avg_pool2d_forward(const PoolGeometry& g, const Tensor& y, const Tensor& x) {
  const Planes p = planes_of(x, y);
  const int64_t n = p.count * p.out_h * p.out_w;
  if (n == 0) return;
  by_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(g, p, y.data<T>(), x.data<T>());
    check_launch();
  });
}

void avg_pool2d_backward(const PoolGeometry& g, const Tensor& dx, const Tensor& dy) {
  const Planes p = planes_of(dx, dy);
  const int64_t n = p.count * p.h * p.w;
  if (n == 0) return;
  by_dtype(dx.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(g, p, dx.data<T>(), dy.data<T>());
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::avg_pool2d_forward, DeviceType::cuda, avg_pool2d_forward);
FM_REGISTER_KERNEL(kernels::avg_pool2d_backward, DeviceType::cuda, avg_pool2d_backward);

}  // namespace
}  // namespace fm::cuda

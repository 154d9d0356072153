// im2col and col2im on the GPU. im2col: one thread per column element.
// col2im gathers instead of scattering: one thread per input pixel adds the
// column entries that read it, in the CPU's (kh, kw) order, so no atomics
// and the same sums.
#include "fm/kernels/conv.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::ConvGeometry;

template <class T>
__global__ void im2col_kernel(ConvGeometry g, int64_t n, T* cols, const T* x) {
  const int64_t taps = g.kernel_h * g.kernel_w, positions = g.out_h * g.out_w, plane = g.in_h * g.in_w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t pos = e % positions, row = e / positions;  // row: image * channels * taps + (c, kh, kw)
    const int64_t tap = row % taps, ic = row / taps;         // ic: image * channels + c
    const int64_t ih = pos / g.out_w * g.stride_h - g.pad_h + tap / g.kernel_w * g.dilation_h;
    const int64_t iw = pos % g.out_w * g.stride_w - g.pad_w + tap % g.kernel_w * g.dilation_w;
    const bool inside = ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w;
    cols[e] = inside ? x[ic * plane + ih * g.in_w + iw] : T(0);
  }
}

// x[i] += the entries of cols read from x[i]. Tap kh reads ih from output row
// oh = (ih + pad - kh * dilation) / stride when that divides exactly.
template <class T>
__global__ void col2im_kernel(ConvGeometry g, int64_t n, T* x, const T* cols) {
  const int64_t taps = g.kernel_h * g.kernel_w, positions = g.out_h * g.out_w, plane = g.in_h * g.in_w;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = e % g.in_w, ih = e / g.in_w % g.in_h, ic = e / plane;
    const T* src = cols + ic * taps * positions;  // rows (c, kh, kw) of this image and channel
    T acc = x[e];
    for (int64_t kh = 0; kh < g.kernel_h; ++kh) {
      const int64_t h = ih + g.pad_h - kh * g.dilation_h;
      if (h < 0) break;  // decreases with kh
      if (h % g.stride_h != 0 || h / g.stride_h >= g.out_h) continue;
      const T* row = src + kh * g.kernel_w * positions + h / g.stride_h * g.out_w;
      for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
        const int64_t w = iw + g.pad_w - kw * g.dilation_w;
        if (w < 0) break;
        if (w % g.stride_w != 0 || w / g.stride_w >= g.out_w) continue;
        acc += row[kw * positions + w / g.stride_w];
      }
    }
    x[e] = acc;
  }
}

// f32 or f64 (data<T>() names the dtype otherwise).
template <class F>
void by_dtype(DType t, F&& f) {
  if (t == DType::f64) f(kernels::Tag<double>{});
  else f(kernels::Tag<float>{});
}

void im2col(const ConvGeometry& g, const Tensor& cols, const Tensor& x) {
  const int64_t n = x.size(0) * g.channels * g.kernel_h * g.kernel_w * g.out_h * g.out_w;
  if (n == 0) return;
  by_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    im2col_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(g, n, cols.data<T>(), x.data<T>());
    check_launch();
  });
}

void col2im(const ConvGeometry& g, const Tensor& x, const Tensor& cols) {
  const int64_t n = x.size(0) * g.channels * g.in_h * g.in_w;
  if (n == 0) return;
  by_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    col2im_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(g, n, x.data<T>(), cols.data<T>());
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::im2col, DeviceType::cuda, im2col);
FM_REGISTER_KERNEL(kernels::col2im, DeviceType::cuda, col2im);

}  // namespace
}  // namespace fm::cuda

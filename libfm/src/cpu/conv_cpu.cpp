// im2col and col2im on the CPU: the column shuffles around a convolution's
// GEMM. im2col runs in parallel over (image, column row); col2im over
// (image, channel), so each thread owns the input plane it adds into.
#include "dispatch.h"
#include "fm/kernels/conv.h"

namespace fm::cpu {
namespace {

using kernels::ConvGeometry;

// The output positions o in [lo, hi) whose input o * stride + offset lies in
// [0, in); the others read padding.
struct Span {
  int64_t lo, hi;
};
Span valid_outputs(int64_t out, int64_t in, int64_t stride, int64_t offset) {
  const int64_t lo = std::min(out, offset >= 0 ? 0 : (-offset + stride - 1) / stride);
  const int64_t hi = std::min(out, in - offset <= 0 ? 0 : (in - offset + stride - 1) / stride);
  return {lo, std::max(lo, hi)};
}

template <class T>
void im2col_typed(const ConvGeometry& g, int64_t images, T* cols, const T* x) {
  const int64_t taps = g.kernel_h * g.kernel_w, rows = g.channels * taps;
  const int64_t positions = g.out_h * g.out_w, plane = g.in_h * g.in_w;
#pragma omp parallel for collapse(2) schedule(static) if (images * rows * positions > kParallelGrain)
  for (int64_t n = 0; n < images; ++n)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = r / taps, kh = r % taps / g.kernel_w, kw = r % g.kernel_w;
      const int64_t off_h = kh * g.dilation_h - g.pad_h, off_w = kw * g.dilation_w - g.pad_w;
      const Span sh = valid_outputs(g.out_h, g.in_h, g.stride_h, off_h);
      const Span sw = valid_outputs(g.out_w, g.in_w, g.stride_w, off_w);
      const T* src = x + (n * g.channels + c) * plane;
      T* dst = cols + (n * rows + r) * positions;
      std::fill(dst, dst + sh.lo * g.out_w, T(0));
      for (int64_t oh = sh.lo; oh < sh.hi; ++oh) {
        const T* in_row = src + (oh * g.stride_h + off_h) * g.in_w;
        T* out_row = dst + oh * g.out_w;
        std::fill(out_row, out_row + sw.lo, T(0));
        for (int64_t ow = sw.lo; ow < sw.hi; ++ow) out_row[ow] = in_row[ow * g.stride_w + off_w];
        std::fill(out_row + sw.hi, out_row + g.out_w, T(0));
      }
      std::fill(dst + sh.hi * g.out_w, dst + positions, T(0));
    }
}

template <class T>
void col2im_typed(const ConvGeometry& g, int64_t images, T* x, const T* cols) {
  const int64_t taps = g.kernel_h * g.kernel_w, rows = g.channels * taps;
  const int64_t positions = g.out_h * g.out_w, plane = g.in_h * g.in_w;
#pragma omp parallel for collapse(2) schedule(static) if (images * rows * positions > kParallelGrain)
  for (int64_t n = 0; n < images; ++n)
    for (int64_t c = 0; c < g.channels; ++c) {
      T* dst = x + (n * g.channels + c) * plane;
      for (int64_t kh = 0; kh < g.kernel_h; ++kh)
        for (int64_t kw = 0; kw < g.kernel_w; ++kw) {
          const int64_t off_h = kh * g.dilation_h - g.pad_h, off_w = kw * g.dilation_w - g.pad_w;
          const Span sh = valid_outputs(g.out_h, g.in_h, g.stride_h, off_h);
          const Span sw = valid_outputs(g.out_w, g.in_w, g.stride_w, off_w);
          const T* src = cols + (n * rows + (c * g.kernel_h + kh) * g.kernel_w + kw) * positions;
          for (int64_t oh = sh.lo; oh < sh.hi; ++oh) {
            T* in_row = dst + (oh * g.stride_h + off_h) * g.in_w;
            const T* col_row = src + oh * g.out_w;
            for (int64_t ow = sw.lo; ow < sw.hi; ++ow) in_row[ow * g.stride_w + off_w] += col_row[ow];
          }
        }
    }
}

// f32 or f64 (data<T>() names the dtype otherwise).
void im2col_kernel(const ConvGeometry& g, const Tensor& cols, const Tensor& x) {
  if (x.dtype() == DType::f64) im2col_typed(g, x.size(0), cols.data<double>(), x.data<double>());
  else im2col_typed(g, x.size(0), cols.data<float>(), x.data<float>());
}

void col2im_kernel(const ConvGeometry& g, const Tensor& x, const Tensor& cols) {
  if (x.dtype() == DType::f64) col2im_typed(g, x.size(0), x.data<double>(), cols.data<double>());
  else col2im_typed(g, x.size(0), x.data<float>(), cols.data<float>());
}

FM_REGISTER_KERNEL(kernels::im2col, DeviceType::cpu, im2col_kernel);
FM_REGISTER_KERNEL(kernels::col2im, DeviceType::cpu, col2im_kernel);

}  // namespace
}  // namespace fm::cpu

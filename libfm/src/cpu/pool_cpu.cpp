// Average pooling on the CPU, in parallel over (image, channel) planes.
#include "dispatch.h"
#include "fm/kernels/conv.h"

namespace fm::cpu {
namespace {

using kernels::planes_of;
using kernels::Planes;
using kernels::PoolGeometry;

// Window [lo, hi) of output o, clipped to the input (the padding adds zeros).
struct Window {
  int64_t lo, hi;
};
Window window(int64_t o, int64_t in, const PoolGeometry& g) {
  const int64_t start = o * g.stride - g.padding;
  return {std::max<int64_t>(start, 0), std::min(start + g.kernel, in)};
}

template <class T>
void forward_typed(const PoolGeometry& g, const Planes& p, T* y, const T* x) {
  const T scale = T(1) / T(g.kernel * g.kernel);
#pragma omp parallel for schedule(static) if (p.count * p.out_h * p.out_w * g.kernel * g.kernel > kParallelGrain)
  for (int64_t i = 0; i < p.count; ++i) {
    const T* src = x + i * p.h * p.w;
    T* dst = y + i * p.out_h * p.out_w;
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const Window wh = window(oh, p.h, g);
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const Window ww = window(ow, p.w, g);
        T acc = 0;
        for (int64_t h = wh.lo; h < wh.hi; ++h)
          for (int64_t w = ww.lo; w < ww.hi; ++w) acc += src[h * p.w + w];
        dst[oh * p.out_w + ow] = acc * scale;
      }
    }
  }
}

template <class T>
void backward_typed(const PoolGeometry& g, const Planes& p, T* dx, const T* dy) {
  const T scale = T(1) / T(g.kernel * g.kernel);
#pragma omp parallel for schedule(static) if (p.count * p.out_h * p.out_w * g.kernel * g.kernel > kParallelGrain)
  for (int64_t i = 0; i < p.count; ++i) {
    T* dst = dx + i * p.h * p.w;
    const T* src = dy + i * p.out_h * p.out_w;
    std::fill(dst, dst + p.h * p.w, T(0));
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const Window wh = window(oh, p.h, g);
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const Window ww = window(ow, p.w, g);
        const T v = src[oh * p.out_w + ow] * scale;
        for (int64_t h = wh.lo; h < wh.hi; ++h)
          for (int64_t w = ww.lo; w < ww.hi; ++w) dst[h * p.w + w] += v;
      }
    }
  }
}

// f32 or f64 (data<T>() names the dtype otherwise).
void forward_kernel(const PoolGeometry& g, const Tensor& y, const Tensor& x) {
  if (x.dtype() == DType::f64) forward_typed(g, planes_of(x, y), y.data<double>(), x.data<double>());
  else forward_typed(g, planes_of(x, y), y.data<float>(), x.data<float>());
}

void backward_kernel(const PoolGeometry& g, const Tensor& dx, const Tensor& dy) {
  if (dx.dtype() == DType::f64) backward_typed(g, planes_of(dx, dy), dx.data<double>(), dy.data<double>());
  else backward_typed(g, planes_of(dx, dy), dx.data<float>(), dy.data<float>());
}

FM_REGISTER_KERNEL(kernels::avg_pool2d_forward, DeviceType::cpu, forward_kernel);
FM_REGISTER_KERNEL(kernels::avg_pool2d_backward, DeviceType::cpu, backward_kernel);

}  // namespace
}  // namespace fm::cpu

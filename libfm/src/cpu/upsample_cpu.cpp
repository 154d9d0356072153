// Nearest and bilinear resizing on the CPU, in parallel over (image, channel)
// planes. The source indices come from the shared rules in fm/kernels/conv.h.
#include <vector>

#include "dispatch.h"
#include "fm/kernels/conv.h"

namespace fm::cpu {
namespace {

using kernels::LinearTap;
using kernels::planes_of;
using kernels::Planes;
using kernels::UpsampleMode;

std::vector<int64_t> nearest_sources(int64_t in, int64_t out) {
  std::vector<int64_t> src(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) src[size_t(o)] = kernels::nearest_source(o, in, out);
  return src;
}

template <class T>
std::vector<LinearTap<T>> linear_sources(int64_t in, int64_t out) {
  std::vector<LinearTap<T>> taps(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) taps[size_t(o)] = kernels::linear_source<T>(o, in, out);
  return taps;
}

template <class T>
void forward_typed(UpsampleMode mode, const Planes& p, T* y, const T* x) {
  const bool parallel = p.count * p.out_h * p.out_w > kParallelGrain;
  if (mode == UpsampleMode::nearest) {
    const auto sh = nearest_sources(p.h, p.out_h), sw = nearest_sources(p.w, p.out_w);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < p.count; ++i)
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        const T* src = x + (i * p.h + sh[size_t(oh)]) * p.w;
        T* dst = y + (i * p.out_h + oh) * p.out_w;
        for (int64_t ow = 0; ow < p.out_w; ++ow) dst[ow] = src[sw[size_t(ow)]];
      }
    return;
  }
  const auto th = linear_sources<T>(p.h, p.out_h), tw = linear_sources<T>(p.w, p.out_w);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < p.count; ++i)
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const LinearTap<T>& a = th[size_t(oh)];
      const T a1 = a.w1, a0 = T(1) - a1;
      const T* row0 = x + (i * p.h + a.i0) * p.w;
      const T* row1 = x + (i * p.h + a.i1) * p.w;
      T* dst = y + (i * p.out_h + oh) * p.out_w;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const LinearTap<T>& b = tw[size_t(ow)];
        const T b1 = b.w1, b0 = T(1) - b1;
        dst[ow] = a0 * (b0 * row0[b.i0] + b1 * row0[b.i1]) + a1 * (b0 * row1[b.i0] + b1 * row1[b.i1]);
      }
    }
}

template <class T>
void backward_typed(UpsampleMode mode, const Planes& p, T* dx, const T* dy) {
  const bool parallel = p.count * p.out_h * p.out_w > kParallelGrain;
  if (mode == UpsampleMode::nearest) {
    const auto sh = nearest_sources(p.h, p.out_h), sw = nearest_sources(p.w, p.out_w);
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t i = 0; i < p.count; ++i) {
      std::fill(dx + i * p.h * p.w, dx + (i + 1) * p.h * p.w, T(0));
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        T* dst = dx + (i * p.h + sh[size_t(oh)]) * p.w;
        const T* src = dy + (i * p.out_h + oh) * p.out_w;
        for (int64_t ow = 0; ow < p.out_w; ++ow) dst[sw[size_t(ow)]] += src[ow];
      }
    }
    return;
  }
  const auto th = linear_sources<T>(p.h, p.out_h), tw = linear_sources<T>(p.w, p.out_w);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < p.count; ++i) {
    std::fill(dx + i * p.h * p.w, dx + (i + 1) * p.h * p.w, T(0));
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const LinearTap<T>& a = th[size_t(oh)];
      const T a1 = a.w1, a0 = T(1) - a1;
      T* row0 = dx + (i * p.h + a.i0) * p.w;
      T* row1 = dx + (i * p.h + a.i1) * p.w;
      const T* src = dy + (i * p.out_h + oh) * p.out_w;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const LinearTap<T>& b = tw[size_t(ow)];
        const T b1 = b.w1, b0 = T(1) - b1;
        row0[b.i0] += a0 * b0 * src[ow];
        row0[b.i1] += a0 * b1 * src[ow];
        row1[b.i0] += a1 * b0 * src[ow];
        row1[b.i1] += a1 * b1 * src[ow];
      }
    }
  }
}

// f32 or f64 (data<T>() names the dtype otherwise).
void forward_kernel(UpsampleMode mode, const Tensor& y, const Tensor& x) {
  if (x.dtype() == DType::f64) forward_typed(mode, planes_of(x, y), y.data<double>(), x.data<double>());
  else forward_typed(mode, planes_of(x, y), y.data<float>(), x.data<float>());
}

void backward_kernel(UpsampleMode mode, const Tensor& dx, const Tensor& dy) {
  if (dx.dtype() == DType::f64) backward_typed(mode, planes_of(dx, dy), dx.data<double>(), dy.data<double>());
  else backward_typed(mode, planes_of(dx, dy), dx.data<float>(), dy.data<float>());
}

FM_REGISTER_KERNEL(kernels::upsample_forward, DeviceType::cpu, forward_kernel);
FM_REGISTER_KERNEL(kernels::upsample_backward, DeviceType::cpu, backward_kernel);

}  // namespace
}  // namespace fm::cpu

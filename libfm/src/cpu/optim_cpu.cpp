// Fused optimizer updates on the CPU: one OpenMP-parallel, vectorised pass
// over the flat buffers, with the functors of fm/kernels/optim.h. Each loop
// works on a private copy of its functor (firstprivate), so the compiler
// knows the coefficients are constant and vectorises.
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "dispatch.h"
#include "fm/kernels/optim.h"

namespace fm::cpu {
namespace {

using kernels::check_optim_operands;

template <class T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data_ptr());
}

// x = sqrt(x). GCC vectorises std::sqrt only under -fno-math-errno, which
// libfm does not set, so x86 gets the packed instruction explicitly; it
// rounds exactly as the scalar one.
template <class T>
void sqrt_in_place(T* x, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
  else
    for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _mm512_sqrt_pd(_mm512_loadu_pd(x + i)));
#elif defined(__AVX__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
  else
    for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, _mm256_sqrt_pd(_mm256_loadu_pd(x + i)));
#elif defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
  else
    for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
#endif
  for (; i < n; ++i) x[i] = std::sqrt(x[i]);
}

// AdamW in L1-sized blocks: moments, square roots of v, then the update.
template <class T>
void adamw_typed(T* p, const T* g, T* m, T* v, int64_t n, const kernels::AdamWArgs& args) {
  constexpr int64_t kBlock = 1024;
  const kernels::AdamWUpdate<T> f(args);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) firstprivate(f) if (n > kParallelGrain)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kBlock, len = std::min(kBlock, n - lo);
    T* pb = p + lo;
    T* mb = m + lo;
    T* vb = v + lo;
    const T* gb = g + lo;
    alignas(64) T root[kBlock];
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) {
      f.moments(pb[i], gb[i], mb[i], vb[i]);
      root[i] = vb[i];
    }
    sqrt_in_place(root, len);
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) f.apply(pb[i], mb[i], root[i]);
  }
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const kernels::AdamWArgs& args) {
  check_optim_operands("adamw_step", {&param, &grad, &exp_avg, &exp_avg_sq});
  if (param.dtype() == DType::f32)
    adamw_typed(ptr<float>(param), ptr<float>(grad), ptr<float>(exp_avg), ptr<float>(exp_avg_sq), param.numel(), args);
  else
    adamw_typed(ptr<double>(param), ptr<double>(grad), ptr<double>(exp_avg), ptr<double>(exp_avg_sq), param.numel(),
                args);
}

template <class T>
void sgd_typed(T* p, const T* g, T* buf, int64_t n, const kernels::SGDArgs& args) {
  const kernels::SGDUpdate<T> f(args);
  if (buf) {
#pragma omp parallel for simd schedule(static) firstprivate(f) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) f(p[i], g[i], buf[i]);
  } else {
#pragma omp parallel for simd schedule(static) firstprivate(f) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      T unused = 0;
      f(p[i], g[i], unused);
    }
  }
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const kernels::SGDArgs& args) {
  check_optim_operands("sgd_step", {&param, &grad, &momentum_buffer});
  if (args.momentum != 0 && !momentum_buffer.defined()) error("sgd_step: momentum needs a buffer");
  const bool has_buffer = args.momentum != 0;
  if (param.dtype() == DType::f32)
    sgd_typed(ptr<float>(param), ptr<float>(grad), has_buffer ? ptr<float>(momentum_buffer) : nullptr, param.numel(),
              args);
  else
    sgd_typed(ptr<double>(param), ptr<double>(grad), has_buffer ? ptr<double>(momentum_buffer) : nullptr, param.numel(),
              args);
}

template <class T>
void ema_typed(T* shadow, const T* x, int64_t n, double decay) {
  const kernels::EMAUpdate<T> f(decay);
#pragma omp parallel for simd schedule(static) firstprivate(f) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) f(shadow[i], x[i]);
}

void ema_update(const Tensor& shadow, const Tensor& x, double decay) {
  check_optim_operands("ema_update", {&shadow, &x});
  if (shadow.dtype() == DType::f32)
    ema_typed(ptr<float>(shadow), ptr<float>(x), shadow.numel(), decay);
  else
    ema_typed(ptr<double>(shadow), ptr<double>(x), shadow.numel(), decay);
}

FM_REGISTER_KERNEL(kernels::adamw_step, DeviceType::cpu, adamw_step);
FM_REGISTER_KERNEL(kernels::sgd_step, DeviceType::cpu, sgd_step);
FM_REGISTER_KERNEL(kernels::ema_update, DeviceType::cpu, ema_update);

}  // namespace
}  // namespace fm::cpu

// Fused optimizer updates on the GPU: one grid-stride pass over the flat
// buffers with the functors of fm/kernels/optim.h, 16-byte loads and stores
// when every buffer is aligned for them.
#include <cstdint>
#include <initializer_list>

#include "fm/kernels/optim.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::check_optim_operands;

// K elements of T in one 16-byte word.
template <class T>
struct alignas(16) Pack {
  static constexpr int K = 16 / sizeof(T);
  T v[K];
};

template <class T>
__device__ __forceinline__ Pack<T> load(const T* p, int64_t i) {
  return reinterpret_cast<const Pack<T>*>(p)[i];
}
template <class T>
__device__ __forceinline__ void store(T* p, int64_t i, const Pack<T>& v) {
  reinterpret_cast<Pack<T>*>(p)[i] = v;
}

bool aligned(std::initializer_list<const void*> ps) {
  for (const void* p : ps)
    if (p && reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Packs [0, packs) then the scalar tail; packs is 0 when unaligned.
#define FM_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, int64_t packs, kernels::AdamWUpdate<T> f) {
  constexpr int K = Pack<T>::K;
  FM_GRID_STRIDE(j, packs) {
    Pack<T> pp = load(p, j), mp = load(m, j), vp = load(v, j);
    const Pack<T> gp = load(g, j);
#pragma unroll
    for (int k = 0; k < K; ++k) f(pp.v[k], gp.v[k], mp.v[k], vp.v[k]);
    store(p, j, pp);
    store(m, j, mp);
    store(v, j, vp);
  }
  FM_GRID_STRIDE(i, n - packs * K) {
    const int64_t e = packs * K + i;
    T pe = p[e], me = m[e], ve = v[e];
    f(pe, g[e], me, ve);
    p[e] = pe;
    m[e] = me;
    v[e] = ve;
  }
}

template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* buf, int64_t n, int64_t packs, kernels::SGDUpdate<T> f) {
  constexpr int K = Pack<T>::K;
  FM_GRID_STRIDE(j, packs) {
    Pack<T> pp = load(p, j), bp{};
    const Pack<T> gp = load(g, j);
    if (buf) bp = load(buf, j);
#pragma unroll
    for (int k = 0; k < K; ++k) f(pp.v[k], gp.v[k], bp.v[k]);
    store(p, j, pp);
    if (buf) store(buf, j, bp);
  }
  FM_GRID_STRIDE(i, n - packs * K) {
    const int64_t e = packs * K + i;
    T pe = p[e], be = buf ? buf[e] : T(0);
    f(pe, g[e], be);
    p[e] = pe;
    if (buf) buf[e] = be;
  }
}

template <class T>
__global__ void ema_kernel(T* s, const T* x, int64_t n, int64_t packs, kernels::EMAUpdate<T> f) {
  constexpr int K = Pack<T>::K;
  FM_GRID_STRIDE(j, packs) {
    Pack<T> sp = load(s, j);
    const Pack<T> xp = load(x, j);
#pragma unroll
    for (int k = 0; k < K; ++k) f(sp.v[k], xp.v[k]);
    store(s, j, sp);
  }
  FM_GRID_STRIDE(i, n - packs * K) {
    const int64_t e = packs * K + i;
    T se = s[e];
    f(se, x[e]);
    s[e] = se;
  }
}

#undef FM_GRID_STRIDE

template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Whole packs when every pointer is 16-byte aligned, else none.
template <class T>
int64_t packs_of(int64_t n, std::initializer_list<const void*> ps) {
  return aligned(ps) ? n / Pack<T>::K : 0;
}

template <class T>
int grid_for(int64_t n) {
  return blocks_for((n + Pack<T>::K - 1) / Pack<T>::K);
}

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const kernels::AdamWArgs& args) {
  check_optim_operands("adamw_step", {&param, &grad, &exp_avg, &exp_avg_sq});
  const int64_t n = param.numel();
  if (n == 0) return;
  kernels::dispatch_float(param.dtype(), "adamw_step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      T *p = ptr<T>(param), *g = ptr<T>(grad), *m = ptr<T>(exp_avg), *v = ptr<T>(exp_avg_sq);
      adamw_kernel<<<grid_for<T>(n), kThreads, 0, stream()>>>(p, g, m, v, n, packs_of<T>(n, {p, g, m, v}),
                                                              kernels::AdamWUpdate<T>(args));
      check_launch();
    }
  });
}

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const kernels::SGDArgs& args) {
  check_optim_operands("sgd_step", {&param, &grad, &momentum_buffer});
  if (args.momentum != 0 && !momentum_buffer.defined()) error("sgd_step: momentum needs a buffer");
  const int64_t n = param.numel();
  if (n == 0) return;
  kernels::dispatch_float(param.dtype(), "sgd_step", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      T *p = ptr<T>(param), *g = ptr<T>(grad), *buf = args.momentum != 0 ? ptr<T>(momentum_buffer) : nullptr;
      sgd_kernel<<<grid_for<T>(n), kThreads, 0, stream()>>>(p, g, buf, n, packs_of<T>(n, {p, g, buf}),
                                                            kernels::SGDUpdate<T>(args));
      check_launch();
    }
  });
}

void ema_update(const Tensor& shadow, const Tensor& x, double decay) {
  check_optim_operands("ema_update", {&shadow, &x});
  const int64_t n = shadow.numel();
  if (n == 0) return;
  kernels::dispatch_float(shadow.dtype(), "ema_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      T *s = ptr<T>(shadow), *xp = ptr<T>(x);
      ema_kernel<<<grid_for<T>(n), kThreads, 0, stream()>>>(s, xp, n, packs_of<T>(n, {s, xp}),
                                                            kernels::EMAUpdate<T>(decay));
      check_launch();
    }
  });
}

FM_REGISTER_KERNEL(kernels::adamw_step, DeviceType::cuda, adamw_step);
FM_REGISTER_KERNEL(kernels::sgd_step, DeviceType::cuda, sgd_step);
FM_REGISTER_KERNEL(kernels::ema_update, DeviceType::cuda, ema_update);

}  // namespace
}  // namespace fm::cuda

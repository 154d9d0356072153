// Fused cross-entropy on the GPU, a block per row of logits. The forward
// reads a row once, keeping an online (max, sum of exp) pair per thread in
// f32 (f64 for f64 logits), and saves the logsumexp; the backward recomputes
// softmax from it and writes dlogits in the logits' dtype, so no [rows, C]
// f32 temporary is ever made. Rows are read with 16-byte loads when aligned.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "block_reduce.cuh"
#include "fm/factory.h"
#include "fm/kernels/norm.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;

template <class S>
constexpr int kVec = 16 / int(sizeof(S));

template <class S>
struct alignas(16) Pack {
  S v[kVec<S>];
};

template <class S>
__device__ __forceinline__ bool aligned16(const S* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// f(i, x[i]) for the elements of a row this thread owns; 16-byte packs when
// the row starts 16-byte aligned, then the tail one by one.
template <class S, class F>
__device__ __forceinline__ void for_row(const S* row, int64_t n, F&& f) {
  using C = compute_t<S>;
  constexpr int V = kVec<S>;
  int64_t head = 0;
  if (aligned16(row)) {
    const int64_t packs = n / V;
    const Pack<S>* rp = reinterpret_cast<const Pack<S>*>(row);
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
      const Pack<S> p = rp[j];
#pragma unroll
      for (int e = 0; e < V; ++e) f(j * V + e, C(p.v[e]));
    }
    head = packs * V;
  }
  for (int64_t i = head + threadIdx.x; i < n; i += blockDim.x) f(i, C(row[i]));
}

// out[i] = S(f(i, x[i])) over a row, with 16-byte packs when both rows allow.
template <class S, class F>
__device__ __forceinline__ void map_row(S* out, const S* row, int64_t n, F&& f) {
  using C = compute_t<S>;
  constexpr int V = kVec<S>;
  int64_t head = 0;
  if (aligned16(row) && aligned16(out)) {
    const int64_t packs = n / V;
    const Pack<S>* rp = reinterpret_cast<const Pack<S>*>(row);
    Pack<S>* op = reinterpret_cast<Pack<S>*>(out);
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) {
      const Pack<S> p = rp[j];
      Pack<S> o;
#pragma unroll
      for (int e = 0; e < V; ++e) o.v[e] = S(f(j * V + e, C(p.v[e])));
      op[j] = o;
    }
    head = packs * V;
  }
  for (int64_t i = head + threadIdx.x; i < n; i += blockDim.x) out[i] = S(f(i, C(row[i])));
}

template <class S>
__device__ __forceinline__ void zero_row(S* out, int64_t n) {
  using C = compute_t<S>;
  constexpr int V = kVec<S>;
  int64_t head = 0;
  if (aligned16(out)) {
    Pack<S> z;
#pragma unroll
    for (int e = 0; e < V; ++e) z.v[e] = S(C(0));
    const int64_t packs = n / V;
    for (int64_t j = threadIdx.x; j < packs; j += blockDim.x) reinterpret_cast<Pack<S>*>(out)[j] = z;
    head = packs * V;
  }
  for (int64_t i = head + threadIdx.x; i < n; i += blockDim.x) out[i] = S(C(0));
}

// Threads per row: a multiple of 32 with about four packs each, at most 512.
unsigned threads_for(int64_t n, int vec) {
  unsigned t = 32;
  while (t < 512 && int64_t(t) * vec * 4 < n) t *= 2;
  return t;
}

template <class S, class T>
__global__ void forward_kernel(compute_t<S>* loss, compute_t<S>* lse, const S* logits, const T* target, int64_t n,
                               int64_t ignore_index, compute_t<S> eps, unsigned long long* bad_row) {
  using C = compute_t<S>;
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();
  const int64_t r = blockIdx.x;
  const int64_t t = int64_t(target[r]);
  if (t == ignore_index || t < 0 || t >= n) {
    if (threadIdx.x == 0) {
      loss[r] = lse[r] = 0;
      // The first bad row is reported on the host; an integer atomic, so the result is deterministic.
      if (t != ignore_index) atomicMin(bad_row, static_cast<unsigned long long>(r));
    }
    return;
  }
  const S* row = logits + r * n;
  MaxExpSum<C> st{kNegInf, C(0)};
  C sum_x = 0;
  const bool smooth = eps != C(0);  // as the CPU: sum(x) only when used (it may be inf)
  for_row(row, n, [&](int64_t, C v) {
    st.push(v);
    if (smooth) sum_x += v;
  });
  st = block_reduce(st, MaxExpSumOp{}, MaxExpSum<C>{kNegInf, C(0)});
  if (smooth) sum_x = block_reduce(sum_x, SumOp{}, C(0));
  if (threadIdx.x == 0) {
    const C l = st.m + log(st.s);
    lse[r] = l;
    loss[r] = l - (C(1) - eps) * C(row[t]) - eps * sum_x / C(n);
  }
}

template <class S, class T>
__global__ void backward_kernel(S* dlogits, const compute_t<S>* grad_loss, const S* logits, const T* target,
                                const compute_t<S>* lse, int64_t n, int64_t ignore_index, compute_t<S> eps) {
  using C = compute_t<S>;
  const int64_t r = blockIdx.x;
  const int64_t t = int64_t(target[r]);
  S* drow = dlogits + r * n;
  if (t == ignore_index || t < 0 || t >= n) {
    zero_row(drow, n);
    return;
  }
  const C g = grad_loss[r], l = lse[r], uniform = eps / C(n), hit = (C(1) - eps) * g;
  map_row(drow, logits + r * n, n, [&](int64_t i, C v) {
    C d = (exp(v - l) - uniform) * g;
    if (i == t) d -= hit;
    return d;
  });
}

template <class F>
void dispatch_target(DType t, F&& f) {
  if (t == DType::i64) return f(kernels::Tag<int64_t>{});
  if (t == DType::i32) return f(kernels::Tag<int32_t>{});
  error("cross_entropy: target must be int32 or int64, got ", t);
}

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double smoothing) {
  kernels::check_cross_entropy_inputs(logits, target);
  const int64_t rows = logits.size(0), n = logits.size(1);
  if (rows == 0) return;
  const Tensor bad = fm::empty({1}, TensorOptions(DType::i64).device(logits.device()));
  auto* pbad = static_cast<unsigned long long*>(bad.data_ptr());
  FM_CUDA_CHECK(cudaMemsetAsync(pbad, 0xff, sizeof(unsigned long long), stream()));  // "none"
  kernels::dispatch_float(logits.dtype(), "cross_entropy", [&](auto s) {
    using S = typename decltype(s)::type;
    using C = compute_t<S>;
    dispatch_target(target.dtype(), [&](auto t) {
      using T = typename decltype(t)::type;
      forward_kernel<S, T><<<unsigned(rows), threads_for(n, kVec<S>), 0, stream()>>>(
          static_cast<C*>(loss.data_ptr()), static_cast<C*>(lse.data_ptr()), static_cast<const S*>(logits.data_ptr()),
          static_cast<const T*>(target.data_ptr()), n, ignore_index, C(smoothing), pbad);
      check_launch();
    });
  });
  // The slot raises on a bad target, as the CPU does: the one host sync here.
  unsigned long long bad_row = 0;
  FM_CUDA_CHECK(cudaMemcpyAsync(&bad_row, pbad, sizeof bad_row, cudaMemcpyDeviceToHost, stream()));
  FM_CUDA_CHECK(cudaStreamSynchronize(stream()));
  if (bad_row == ~0ull) return;
  int64_t bad_value = 0;
  dispatch_target(target.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    T v{};
    FM_CUDA_CHECK(cudaMemcpyAsync(&v, static_cast<const T*>(target.data_ptr()) + bad_row, sizeof(T),
                                  cudaMemcpyDeviceToHost, stream()));
    FM_CUDA_CHECK(cudaStreamSynchronize(stream()));
    bad_value = int64_t(v);
  });
  error("cross_entropy: target ", bad_value, " at position ", int64_t(bad_row), " is out of range [0, ", n,
        ") and not ignore_index (", ignore_index, ")");
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& target, const Tensor& lse, int64_t ignore_index, double smoothing) {
  kernels::check_cross_entropy_inputs(logits, target);
  const int64_t rows = logits.size(0), n = logits.size(1);
  if (rows == 0 || n == 0) return;
  kernels::dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto s) {
    using S = typename decltype(s)::type;
    using C = compute_t<S>;
    dispatch_target(target.dtype(), [&](auto t) {
      using T = typename decltype(t)::type;
      backward_kernel<S, T><<<unsigned(rows), threads_for(n, kVec<S>), 0, stream()>>>(
          static_cast<S*>(dlogits.data_ptr()), static_cast<const C*>(grad_loss.data_ptr()),
          static_cast<const S*>(logits.data_ptr()), static_cast<const T*>(target.data_ptr()),
          static_cast<const C*>(lse.data_ptr()), n, ignore_index, C(smoothing));
      check_launch();
    });
  });
}

FM_REGISTER_KERNEL(kernels::cross_entropy_forward, DeviceType::cuda, cross_entropy_forward);
FM_REGISTER_KERNEL(kernels::cross_entropy_backward, DeviceType::cuda, cross_entropy_backward);

}  // namespace
}  // namespace fm::cuda

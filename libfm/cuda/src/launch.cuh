#pragma once
// Grid-stride loops over the elements of a StridedPlan.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "check.h"
#include "fm/cuda/cuda.h"
#include "fm/kernels/dispatch.h"

namespace fm::cuda {

template <int N>
struct Offsets {
  int64_t v[N];
};

// Element offsets of each operand for the linear (row-major) index i.
template <int N>
__device__ __forceinline__ Offsets<N> offsets_of(const kernels::StridedPlan<N>& p, int64_t i) {
  Offsets<N> o{};
  for (int d = p.nd - 1; d >= 0; --d) {
    const int64_t idx = i % p.size[d];
    i /= p.size[d];
    for (int k = 0; k < N; ++k) o.v[k] += idx * p.stride[k][d];
  }
  return o;
}

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return int(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

// Contiguous fast path: when every operand walks memory with unit stride,
// kernels skip the per-element index division of offsets_of and move kVec
// elements per access (16 bytes of f32), the pointers being aligned for it.
constexpr int kVec = 4;
template <class T>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

template <int N>
bool is_flat(const kernels::StridedPlan<N>& p, std::initializer_list<std::pair<const void*, size_t>> ptrs) {
  if (p.nd != 1) return false;
  for (int k = 0; k < N; ++k)
    if (p.stride[k][0] != 1) return false;
  for (const auto& [ptr, elem] : ptrs)
    if (reinterpret_cast<uintptr_t>(ptr) % (elem * kVec) != 0) return false;
  return true;
}

// f over each lane of whole packs, taken by value: each operand's pack is one
// vector load, not kVec scalar ones.
template <class R, class F, class... A>
__device__ __forceinline__ Pack<R> map_pack(const F& f, Pack<A>... x) {
  Pack<R> y;
#pragma unroll
  for (int j = 0; j < kVec; ++j) y.v[j] = f(x.v[j]...);
  return y;
}

// out[i] = f(in[i]...) over contiguous aligned operands.
template <class R, class F, class... A>
__global__ void flat_map(int64_t n, F f, R* out, const A*... in) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x, first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t packs = n / kVec;
  for (int64_t i = first; i < packs; i += step)
    reinterpret_cast<Pack<R>*>(out)[i] = map_pack<R>(f, reinterpret_cast<const Pack<A>*>(in)[i]...);
  for (int64_t i = packs * kVec + first; i < n; i += step) out[i] = f(in[i]...);
}

// The element types the flat kernels are built for (the others, integers
// and bool, always take the strided kernels).
template <class T>
constexpr bool kFlatType = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
                           std::is_same_v<T, f16>;

inline int blocks_for_packs(int64_t n) { return blocks_for((n + kVec - 1) / kVec); }

// Kernels launch on the current stream: kernel<<<blocks, kThreads, 0, stream()>>>.
inline cudaStream_t stream() { return current_stream(); }

inline void check_launch() { FM_CUDA_CHECK(cudaGetLastError()); }

}  // namespace fm::cuda

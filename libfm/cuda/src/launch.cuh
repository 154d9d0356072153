#pragma once
// Grid-stride loops over the elements of a StridedPlan.
#include <cuda_runtime.h>

#include <algorithm>

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

// Kernels launch on the current stream: kernel<<<blocks, kThreads, 0, stream()>>>.
inline cudaStream_t stream() { return current_stream(); }

inline void check_launch() { FM_CUDA_CHECK(cudaGetLastError()); }

}  // namespace fm::cuda

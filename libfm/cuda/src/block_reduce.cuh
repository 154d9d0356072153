#pragma once
// Warp and block reductions shared by the row-wise kernels (reduce, the norms,
// cross-entropy). Values are combined in a fixed butterfly/tree order, so a
// result does not change from run to run, and every lane ends up with the
// same bits (the combining ops are commutative).
#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>

#include "check.h"
#include "fm/cuda/cuda.h"

namespace fm::cuda {

template <class T>
__device__ __forceinline__ T shfl_xor(T v, int mask) {
  if constexpr (sizeof(T) < 4) return T(__shfl_xor_sync(0xffffffffu, int(v), mask));
  else return __shfl_xor_sync(0xffffffffu, v, mask);
}

// Running softmax statistics of a set of values: its max m and the sum s of
// exp(x - m). While m is -inf, s counts the -inf values (exp(-inf - -inf)
// taken as 1); they scale to 0 once a finite value arrives. NaNs propagate.
template <class C>
struct MaxExpSum {
  C m, s;

  __device__ __forceinline__ void push(C x) {
    if (x > m) {
      s = s * exp(m - x) + C(1);
      m = x;
    } else {
      s += x == m ? C(1) : exp(x - m);
    }
  }
};

struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// NaN never wins (callers start from -inf and only take x > m), as in the
// CPU row_max.
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return b > a ? b : a; }
};

struct MaxExpSumOp {
  template <class C>
  __device__ __forceinline__ MaxExpSum<C> operator()(MaxExpSum<C> a, MaxExpSum<C> b) const {
    const C m = b.m > a.m ? b.m : a.m;
    const C sa = a.m == m ? a.s : a.s * exp(a.m - m), sb = b.m == m ? b.s : b.s * exp(b.m - m);
    return {m, sa + sb};
  }
};

template <class C>
__device__ __forceinline__ MaxExpSum<C> shfl_xor(MaxExpSum<C> a, int mask) {
  return {shfl_xor(a.m, mask), shfl_xor(a.s, mask)};
}

// Every lane of the warp gets op over the 32 lanes' values.
template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v = op(v, shfl_xor(v, m));
  return v;
}

// Every thread of the block gets op over all of its threads' values.
// blockDim.x must be a multiple of 32 (at most 1024) and blockDim.y 1. Safe to
// call several times in a row: the shared slots are reused only after a barrier.
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity) {
  __shared__ T slots[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_reduce(v, op);
  __syncthreads();
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  return warp_reduce(lane < nwarps ? slots[lane] : identity, op);
}

// Reduction over the threads that share one row: a warp (blockDim.x == 32,
// one row per warp) or the whole block (blockDim.y == 1).
template <class T, class Op>
__device__ __forceinline__ T row_reduce(T v, Op op, T identity) {
  return blockDim.x == 32 ? warp_reduce(v, op) : block_reduce(v, op, identity);
}

// Multiprocessors of the current device, looked up once per device.
inline int sm_count() {
  static std::atomic<int> counts[64] = {};
  const int d = current_device();
  int n = d >= 0 && d < 64 ? counts[d].load(std::memory_order_relaxed) : 0;
  if (n == 0) {
    FM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d));
    if (d >= 0 && d < 64) counts[d].store(n, std::memory_order_relaxed);
  }
  return n;
}

}  // namespace fm::cuda

// Philox draws and dropout on the GPU. One thread per counter block, with the
// CPU backend's lane layout (element i: lane i % k of block i / k) and its
// per-block math (kernels::random_block), so a stream gives the same numbers
// on either device.
#include "fm/kernels/attention.h"
#include "fm/kernels/core.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;
using kernels::RandomKind;

template <class T>
__global__ void random_kernel(T* out, int64_t n, RandomKind kind, PhiloxState s, double a, double b) {
  const int64_t nblocks = (n + kernels::random_per_block<T> - 1) / kernels::random_per_block<T>;
  for (int64_t blk = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; blk < nblocks;
       blk += int64_t(gridDim.x) * blockDim.x)
    kernels::random_block(out, n, blk, kind, s, a, b);
}

void random(const Tensor& out, RandomKind kind, PhiloxState s, double a, double b) {
  kernels::check_random(out, kind, a, b);
  const int64_t n = out.numel();
  if (n == 0) return;
  kernels::dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t per_block = kernels::random_per_block<T>;
    random_kernel<<<blocks_for((n + per_block - 1) / per_block), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), n, kind, s, a, b);
    check_launch();
  });
}

// The keep test compares the exact f32 uniform with p in f64, as the CPU.
template <class T>
__global__ void dropout_kernel(T* out, const T* x, int64_t n, PhiloxState s, double p, compute_t<T> scale) {
  using C = compute_t<T>;
  const int64_t nblocks = (n + 3) / 4;
  for (int64_t blk = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; blk < nblocks;
       blk += int64_t(gridDim.x) * blockDim.x) {
    const auto bits = philox_block(s, uint64_t(blk));
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = blk * 4 + lane;
      if (i >= n) break;
      const bool keep = double(uint_to_unit_float(bits[lane])) > p;
      out[i] = keep ? T(C(x[i]) * scale) : T(C(0));
    }
  }
}

void dropout(const Tensor& out, const Tensor& x, PhiloxState s, double p) {
  kernels::dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const int64_t n = x.numel();
    if (n == 0) return;
    dropout_kernel<<<blocks_for((n + 3) / 4), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), n, s, p, C(1.0 / (1.0 - p)));
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::random, DeviceType::cuda, random);
FM_REGISTER_KERNEL(kernels::dropout, DeviceType::cuda, dropout);

}  // namespace
}  // namespace fm::cuda

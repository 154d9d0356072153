// Philox draws on the CPU: element i takes lane i % k of counter block i / k
// (k = 4 for 32-bit draws, 2 for 64-bit), so values depend only on
// (seed, offset, i), never on the thread count. The per-block math is
// kernels::random_block (fm/kernels/core.h), shared with the GPU.
#include "dispatch.h"
#include "fm/kernels/core.h"

namespace fm::cpu {
namespace {

using kernels::RandomKind;

template <class T>
void fill_random(T* out, int64_t n, RandomKind kind, PhiloxState s, double a, double b) {
  const int64_t nblocks = (n + kernels::random_per_block<T> - 1) / kernels::random_per_block<T>;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t blk = 0; blk < nblocks; ++blk) kernels::random_block(out, n, blk, kind, s, a, b);
}

void random_kernel(const Tensor& out, RandomKind kind, PhiloxState s, double a, double b) {
  kernels::check_random(out, kind, a, b);
  dispatch_numeric(out.dtype(), "random", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill_random<T>(static_cast<T*>(out.data_ptr()), out.numel(), kind, s, a, b);
  });
}

FM_REGISTER_KERNEL(kernels::random, DeviceType::cpu, random_kernel);

}  // namespace
}  // namespace fm::cpu

// Dropout on the CPU: element i is kept when the uniform of lane i % 4 of
// Philox block i / 4 exceeds p, so the mask does not depend on the thread count.
#include "dispatch.h"
#include "fm/kernels/attention.h"

namespace fm::cpu {
namespace {

template <class T>
void dropout_run(const T* x, T* out, int64_t n, PhiloxState state, double p) {
  using C = compute_t<T>;
  const C scale = C(1.0 / (1.0 - p));
  const int64_t nblocks = int64_t(kernels::dropout_blocks(n));
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t blk = 0; blk < nblocks; ++blk) {
    const auto bits = philox_block(state, uint64_t(blk));
    for (int64_t lane = 0; lane < 4 && blk * 4 + lane < n; ++lane) {
      const int64_t i = blk * 4 + lane;
      const bool keep = double(uint_to_unit_float(bits[size_t(lane)])) > p;  // uniform in (0, 1]
      out[i] = keep ? T(C(x[i]) * scale) : T(C(0));
    }
  }
}

void dropout_kernel(const Tensor& out, const Tensor& x, PhiloxState state, double p) {
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_run<T>(x.data<T>(), out.data<T>(), x.numel(), state, p);
  });
}

FM_REGISTER_KERNEL(kernels::dropout, DeviceType::cpu, dropout_kernel);

}  // namespace
}  // namespace fm::cpu

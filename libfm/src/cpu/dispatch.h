#pragma once
// Helpers shared by the CPU kernels: dtype dispatch and strided loops.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "fm/kernels/dispatch.h"

namespace fm::cpu {

using kernels::compute_t;
using kernels::dispatch_all;
using kernels::dispatch_float;
using kernels::dispatch_numeric;
using kernels::StridedPlan;
using kernels::Tag;

constexpr int64_t kParallelGrain = 32768;  // elements below which loops stay serial

// Calls f(offsets, n, inner_strides) for runs of the innermost dim, in
// parallel. Offsets and strides are in elements, one per operand.
template <int N, class F>
void for_each_run(const StridedPlan<N>& p, F&& f) {
  const int64_t inner = p.size[p.nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < p.nd - 1; ++d) outer *= p.size[d];
  std::array<int64_t, N> inner_stride;
  for (int k = 0; k < N; ++k) inner_stride[k] = p.stride[k][p.nd - 1];

  if (outer == 1) {  // one long run: split it into chunks
    const int64_t chunk = 8192;
    const int64_t nchunks = (inner + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (inner > kParallelGrain)
    for (int64_t c = 0; c < nchunks; ++c) {
      std::array<int64_t, N> off;
      for (int k = 0; k < N; ++k) off[k] = c * chunk * inner_stride[k];
      f(off.data(), std::min(chunk, inner - c * chunk), inner_stride.data());
    }
    return;
  }
#pragma omp parallel for schedule(static) if (outer * inner > kParallelGrain)
  for (int64_t o = 0; o < outer; ++o) {
    std::array<int64_t, N> off{};
    int64_t rem = o;
    for (int d = p.nd - 2; d >= 0; --d) {
      const int64_t i = rem % p.size[d];
      rem /= p.size[d];
      for (int k = 0; k < N; ++k) off[k] += i * p.stride[k][d];
    }
    f(off.data(), inner, inner_stride.data());
  }
}

}  // namespace fm::cpu

#pragma once
// Exact (erf) GELU and its gradient over contiguous f32 runs, vectorised
// through Eigen's packet erf/exp (max relative erf error ~5e-7, below the
// 1e-6 the scalar functor is tested to). The shared functors in
// fm/kernels/functors.h stay the reference; these serve the CPU hot loop.
#include <cstdint>

namespace fm::cpu {

void gelu_f32(const float* x, float* y, int64_t n);
// out = g * dgelu/dx (x)
void gelu_backward_f32(const float* g, const float* x, float* out, int64_t n);

// The tanh approximation (GPT-2's, DiT's) and its gradient, written with
// Eigen's packet exp as x * sigmoid(2u) (accurate in the tails).
void gelu_tanh_f32(const float* x, float* y, int64_t n);
void gelu_tanh_backward_f32(const float* g, const float* x, float* out, int64_t n);

}  // namespace fm::cpu

#include "gelu_cpu.h"

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>

namespace fm::cpu {
namespace {

using In = Eigen::Map<const Eigen::ArrayXf>;
using Out = Eigen::Map<Eigen::ArrayXf>;
constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

}  // namespace

void gelu_f32(const float* x, float* y, int64_t n) {
  In a(x, n);
  Out(y, n) = 0.5f * a * (1.0f + (a * kSqrtHalf).erf());
}

void gelu_backward_f32(const float* g, const float* x, float* out, int64_t n) {
  In a(x, n);
  // cdf(x) + x * pdf(x)
  Out(out, n) = In(g, n) * (0.5f * (1.0f + (a * kSqrtHalf).erf()) + a * kInvSqrt2Pi * (-0.5f * a.square()).exp());
}

}  // namespace fm::cpu

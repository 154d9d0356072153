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

namespace {
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kCubic = 0.044715f;
}  // namespace

// 0.5 (1 + tanh(u)) = sigmoid(2u) and 1 - tanh(u)^2 = 4 s (1 - s): no
// cancellation in the tails, where 1 + tanh(u) rounds to 0 in f32.
void gelu_tanh_f32(const float* x, float* y, int64_t n) {
  In a(x, n);
  Out(y, n) = a / (1.0f + (-2.0f * kSqrt2OverPi * (a + kCubic * a.cube())).exp());
}

void gelu_tanh_backward_f32(const float* g, const float* x, float* out, int64_t n) {
  In a(x, n);
  const Eigen::ArrayXf s = 1.0f / (1.0f + (-2.0f * kSqrt2OverPi * (a + kCubic * a.cube())).exp());
  Out(out, n) = In(g, n) * (s + 2.0f * kSqrt2OverPi * a * s * (1.0f - s) * (1.0f + 3.0f * kCubic * a.square()));
}

}  // namespace fm::cpu

#pragma once
// Kernel slots of the fused optimizer updates. Every tensor passed is 1-D,
// contiguous, of one length, dtype (f32 or f64) and device; each kernel
// updates in place in a single pass over memory. The per-element math lives
// in the FM_HOST_DEVICE functors below, so a GPU backend runs exactly what
// the CPU tests check against PyTorch.
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "fm/host_device.h"
#include "fm/kernels/kernel.h"
#include "fm/tensor.h"

namespace fm::kernels {

struct AdamWArgs {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  int64_t step = 1;  // 1 on the first update (for the bias corrections)
};

// PyTorch's AdamW, in its order: p *= 1 - lr wd; m += (1 - b1)(g - m);
// v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
// Coefficients are formed in f64 and rounded to T once, as PyTorch does with
// its Python-float scalars.
template <class T>
struct AdamWUpdate {
  T decay, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps;

  explicit AdamWUpdate(const AdamWArgs& a)
      : decay(T(1 - a.lr * a.weight_decay)),
        one_minus_beta1(T(1 - a.beta1)),
        beta2(T(a.beta2)),
        one_minus_beta2(T(1 - a.beta2)),
        step_size(T(a.lr / (1 - std::pow(a.beta1, double(a.step))))),
        bias_correction2_sqrt(T(std::sqrt(1 - std::pow(a.beta2, double(a.step))))),
        eps(T(a.eps)) {}

  FM_HOST_DEVICE void operator()(T& p, T g, T& m, T& v) const {
    moments(p, g, m, v);
    apply(p, m, std::sqrt(v));
  }
  // The two halves, for backends that take the square roots separately.
  FM_HOST_DEVICE void moments(T& p, T g, T& m, T& v) const {
    p *= decay;
    m += one_minus_beta1 * (g - m);  // torch's lerp_ for weights below 0.5
    v = v * beta2 + one_minus_beta2 * g * g;
  }
  FM_HOST_DEVICE void apply(T& p, T m, T sqrt_v) const {
    const T denom = sqrt_v / bias_correction2_sqrt + eps;
    p -= step_size * (m / denom);
  }
};

struct SGDArgs {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the momentum buffer starts as the gradient
};

// PyTorch's SGD: g += wd p; buf = first ? g : momentum buf + (1 - dampening) g;
// g = nesterov ? g + momentum buf : buf; p -= lr g. Without momentum the
// buffer is not touched.
template <class T>
struct SGDUpdate {
  T lr, momentum, one_minus_dampening, weight_decay;
  bool use_momentum, nesterov, first_step;

  explicit SGDUpdate(const SGDArgs& a)
      : lr(T(a.lr)),
        momentum(T(a.momentum)),
        one_minus_dampening(T(1 - a.dampening)),
        weight_decay(T(a.weight_decay)),
        use_momentum(a.momentum != 0),
        nesterov(a.nesterov),
        first_step(a.first_step) {}

  FM_HOST_DEVICE void operator()(T& p, T g, T& buf) const {
    g = g + weight_decay * p;
    if (use_momentum) {
      buf = first_step ? g : buf * momentum + one_minus_dampening * g;
      g = nesterov ? g + momentum * buf : buf;
    }
    p -= lr * g;
  }
};

// Exponential moving average: shadow = decay shadow + (1 - decay) x.
template <class T>
struct EMAUpdate {
  T decay, one_minus_decay;
  explicit EMAUpdate(double d) : decay(T(d)), one_minus_decay(T(1 - d)) {}
  FM_HOST_DEVICE void operator()(T& shadow, T x) const { shadow = decay * shadow + one_minus_decay * x; }
};

extern Kernel<void(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                   const AdamWArgs& args)>
    adamw_step;
// `momentum_buffer` is undefined when args.momentum is 0.
extern Kernel<void(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SGDArgs& args)>
    sgd_step;
extern Kernel<void(const Tensor& shadow, const Tensor& x, double decay)> ema_update;

// Raises unless the operands of an optimizer kernel are contiguous, of one
// length and dtype, f32 or f64; undefined ones (an unused momentum buffer)
// are skipped. Shared by the backends, so both raise the same errors.
void check_optim_operands(const char* op, std::initializer_list<const Tensor*> ts);

}  // namespace fm::kernels

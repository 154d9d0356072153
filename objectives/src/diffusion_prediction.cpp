// Predictions to x0 and noise, for x = alpha x0 + sigma eps:
//   epsilon:      x0 = (x - sigma p) / alpha
//   sample:       eps = (x - alpha p) / sigma
//   v_prediction: v = alpha eps - sigma x0, so x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)
//                 and eps = (sigma x + alpha v) / (alpha^2 + sigma^2) (the denominators are 1 for ddpm)
//   velocity:     v = eps - x0, so x0 = (x - sigma v) / (alpha + sigma) (1 for flow), eps = x0 + v
#include <cmath>

#include "diffusion_internal.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives {
namespace detail {

Tensor x0_from(const std::string& prediction, const Tensor& out, const Tensor& x, double alpha, double sigma) {
  if (prediction == "epsilon") return (x - out * sigma) / alpha;
  if (prediction == "sample") return out;
  if (prediction == "v_prediction") return (x * alpha - out * sigma) / (alpha * alpha + sigma * sigma);
  if (prediction == "velocity") return (x - out * sigma) / (alpha + sigma);
  check_choice("sampler", "prediction", prediction, {"epsilon", "sample", "v_prediction", "velocity"});
  return {};
}

Tensor eps_from(const std::string& prediction, const Tensor& out, const Tensor& x, const Tensor& x0, double alpha,
                double sigma) {
  if (prediction == "epsilon") return out;
  if (prediction == "sample") return (x - x0 * alpha) / sigma;
  if (prediction == "v_prediction") return (x * sigma + out * alpha) / (alpha * alpha + sigma * sigma);
  if (prediction == "velocity") return x0 + out;
  check_choice("sampler", "prediction", prediction, {"epsilon", "sample", "v_prediction", "velocity"});
  return {};
}

Tensor karras_x0_from(const std::string& prediction, const Tensor& out, const Tensor& x, double sigma) {
  // x = x0 + sigma eps is the ddpm x_t times 1 / alpha = sqrt(sigma^2 + 1).
  if (prediction == "epsilon") return x - out * sigma;
  if (prediction == "sample") return out;
  if (prediction == "v_prediction") return out * (-sigma / std::sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
  check_choice("sampler", "prediction", prediction, {"epsilon", "sample", "v_prediction"});
  return {};
}

}  // namespace detail

Denoised split_prediction(const Tensor& prediction, const Tensor& x_t, const Tensor& alpha, const Tensor& sigma,
                          const std::string& prediction_type) {
  constexpr const char* op = "split_prediction";
  if (!prediction.defined() || !x_t.defined() || !alpha.defined() || !sigma.defined())
    error(op, ": prediction, x_t, alpha and sigma must all be defined");
  if (prediction.shape() != x_t.shape() || x_t.dim() < 1)
    error(op, ": prediction ", prediction.shape(), " and x_t ", x_t.shape(), " must be one shape [B, ...]");
  // [B] coefficients as [B, 1, ...] to broadcast over each sample.
  auto per_sample = [&](const char* what, const Tensor& c) {
    if (c.dim() == 0) return c;
    if (c.dim() != 1 || c.size(0) != x_t.size(0))
      error(op, ": ", what, " ", c.shape(), " must be 0-dim or [B] for x_t ", x_t.shape());
    Shape s;
    s.resize(x_t.dim(), 1);
    s[0] = x_t.size(0);
    return c.reshape(s);
  };
  const Tensor a = per_sample("alpha", alpha), s = per_sample("sigma", sigma);
  const Tensor& p = prediction;
  Denoised d;
  if (prediction_type == "epsilon") {
    d.noise = p;
    d.x0 = (x_t - s * p) / a;
  } else if (prediction_type == "sample") {
    d.x0 = p;
    d.noise = (x_t - a * p) / s;
  } else if (prediction_type == "v_prediction") {
    const Tensor norm = a * a + s * s;
    d.x0 = (a * x_t - s * p) / norm;
    d.noise = (s * x_t + a * p) / norm;
  } else if (prediction_type == "velocity") {
    d.x0 = (x_t - s * p) / (a + s);
    d.noise = d.x0 + p;
  } else {
    detail::check_choice(op, "prediction", prediction_type, {"epsilon", "sample", "v_prediction", "velocity"});
  }
  return d;
}

}  // namespace fm::objectives

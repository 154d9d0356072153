// The training side: noising x0 at drawn or given timesteps, the targets,
// min-SNR weights and the weighted MSE. Per-sample scalars (t, alpha, sigma,
// weights) are computed on the host in double: there are B of them.
#include <algorithm>
#include <cmath>
#include <limits>

#include "diffusion_internal.h"
#include "fm/factory.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"

namespace fm::objectives {
namespace {

constexpr const char* kOp = "Diffusion";

// [B] doubles as a [B] f32 tensor on `device`.
Tensor per_sample(const std::vector<double>& v, Device device) {
  return tensor(v, Shape{int64_t(v.size())}, TensorOptions(DType::f32).device(device));
}

// A [B] tensor as [B, 1, ...] against x of `dim` dims.
Tensor broadcastable(const Tensor& c, int dim) {
  Shape s;
  s.resize(dim, 1);
  s[0] = c.size(0);
  return c.reshape(s);
}

}  // namespace

Diffusion::Diffusion(DiffusionOptions o) : o_(std::move(o)) {
  detail::check_choice(kOp, "process", o_.process, {"ddpm", "flow"});
  if (o_.num_train_timesteps < 1) error(kOp, ": num_train_timesteps must be positive, got ", o_.num_train_timesteps);
  if (o_.process == "ddpm") {
    detail::check_choice(kOp, "prediction (process ddpm)", o_.prediction, {"epsilon", "v_prediction", "sample"});
    detail::check_choice(kOp, "t_sampling (process ddpm)", o_.t_sampling, {"uniform"});
    schedule_ = noise_schedule(o_);
  } else {
    detail::check_choice(kOp, "prediction (process flow)", o_.prediction, {"velocity", "epsilon", "sample"});
    detail::check_choice(kOp, "t_sampling", o_.t_sampling, {"uniform", "logit_normal"});
  }
  if (!(o_.shift > 0)) error(kOp, ": shift must be positive, got ", o_.shift);
  if (!(o_.logit_std >= 0)) error(kOp, ": logit_std must be >= 0, got ", o_.logit_std);
  if (!(o_.min_snr_gamma >= 0)) error(kOp, ": min_snr_gamma must be >= 0 (0 = off), got ", o_.min_snr_gamma);
}

double Diffusion::weight(double alpha, double sigma) const {
  const double g = o_.min_snr_gamma;
  if (g == 0) return 1.0;
  const double snr = sigma == 0 ? std::numeric_limits<double>::infinity() : alpha * alpha / (sigma * sigma);
  const double m = std::min(snr, g);
  // The x0-space weight min(snr, g) times (dx0 / dprediction)^2.
  if (o_.prediction == "epsilon") return std::min(1.0, g / snr);  // m / snr, finite at snr 0 and inf
  if (o_.prediction == "sample") return m;
  const double n = o_.prediction == "velocity" ? alpha + sigma : alpha * alpha + sigma * sigma;
  return m * sigma * sigma / (n * n);
}

Noised Diffusion::add_noise(const Tensor& x0, Generator& gen) const {
  if (!x0.defined() || x0.dim() < 1 || x0.size(0) == 0) error(kOp, ": add_noise needs x0 [B, ...] with B > 0");
  const int64_t B = x0.size(0);
  std::vector<double> t;
  if (o_.process == "ddpm") {
    for (int64_t v : randint(0, o_.num_train_timesteps, {B}, DType::i64, &gen).to_vector<int64_t>())
      t.push_back(double(v));
  } else {
    if (o_.t_sampling == "uniform") {
      t = rand({B}, DType::f64, &gen).to_vector<double>();
    } else {
      for (double z : randn({B}, DType::f64, &gen).to_vector<double>())
        t.push_back(1.0 / (1.0 + std::exp(-(o_.logit_mean + o_.logit_std * z))));
    }
    for (double& v : t) v = o_.shift * v / (1 + (o_.shift - 1) * v);
  }
  return make(x0, t, randn(x0.shape(), x0.options(), &gen));
}

Noised Diffusion::add_noise(const Tensor& x0, const Tensor& t, const Tensor& noise) const {
  if (!x0.defined() || x0.dim() < 1 || x0.size(0) == 0) error(kOp, ": add_noise needs x0 [B, ...] with B > 0");
  if (!t.defined() || t.dim() != 1 || t.size(0) != x0.size(0))
    error(kOp, ": add_noise: t must be [B] = [", x0.size(0), "], got ", t.defined() ? t.shape().str() : "undefined");
  if (!noise.defined() || noise.shape() != x0.shape())
    error(kOp, ": add_noise: noise ", noise.defined() ? noise.shape().str() : "undefined", " must be x0's shape ",
          x0.shape());
  std::vector<double> tv = t.to(Device::cpu()).to_vector<double>();
  for (double v : tv) {
    if (o_.process == "ddpm" && !(v >= 0 && v < double(o_.num_train_timesteps) && v == std::floor(v)))
      error(kOp, ": add_noise: ddpm t ", v, " is not an integer in [0, num_train_timesteps = ", o_.num_train_timesteps,
            ")");
    if (o_.process == "flow" && !(v >= 0 && v <= 1)) error(kOp, ": add_noise: flow t ", v, " is outside [0, 1]");
  }
  return make(x0, tv, noise.to(x0.dtype()).to(x0.device()));
}

Noised Diffusion::make(const Tensor& x0, const std::vector<double>& t, const Tensor& noise) const {
  if (!is_floating(x0.dtype())) error(kOp, ": x0 must be floating, got ", name(x0.dtype()));
  std::vector<double> alpha, sigma, timesteps, weights;
  for (double v : t) {
    if (o_.process == "ddpm") {
      const double ab = schedule_.alphas_cumprod[size_t(v)];
      alpha.push_back(std::sqrt(ab));
      sigma.push_back(std::sqrt(1 - ab));
      timesteps.push_back(v);
    } else {
      alpha.push_back(1 - v);
      sigma.push_back(v);
      timesteps.push_back(v * double(o_.num_train_timesteps));
    }
    weights.push_back(weight(alpha.back(), sigma.back()));
  }
  Noised n;
  n.alpha = per_sample(alpha, x0.device());
  n.sigma = per_sample(sigma, x0.device());
  n.timesteps = per_sample(timesteps, x0.device());
  n.weights = per_sample(weights, x0.device());
  // The coefficients in x0's dtype straight from double (f64 data keeps f64 ones).
  const Tensor a = broadcastable(tensor(alpha, Shape{int64_t(t.size())}, x0.options()), x0.dim());
  const Tensor s = broadcastable(tensor(sigma, Shape{int64_t(t.size())}, x0.options()), x0.dim());
  n.x_t = a * x0 + s * noise;
  if (o_.prediction == "epsilon") n.target = noise;
  else if (o_.prediction == "sample") n.target = x0;
  else if (o_.prediction == "v_prediction") n.target = a * noise - s * x0;
  else n.target = noise - x0;  // velocity
  return n;
}

Tensor Diffusion::loss(const Tensor& prediction, const Noised& n) const {
  if (!prediction.defined() || !n.target.defined()) error(kOp, ": loss needs a prediction and a Noised from add_noise");
  if (prediction.shape() != n.target.shape())
    error(kOp, ": loss: prediction ", prediction.shape(), " and target ", n.target.shape(), " differ");
  const DType t = prediction.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor p = prediction.to(t);
  Tensor err = square(p - n.target.to(t).to(p.device()));
  if (err.dim() > 1) {
    Shape dims;
    for (int d = 1; d < err.dim(); ++d) dims.push_back(d);
    err = mean(err, dims);
  }
  return mean(err * n.weights.to(t).to(p.device()));
}

Denoised Diffusion::split(const Tensor& prediction, const Noised& n) const {
  return split_prediction(prediction, n.x_t, n.alpha, n.sigma, o_.prediction);
}

}  // namespace fm::objectives

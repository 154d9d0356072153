// Euler and Heun on the probability-flow ODE in Karras et al.'s (2022)
// variables: x = x0 + sigma eps with sigma = sqrt((1 - ab) / ab), the
// network seeing x / sqrt(sigma^2 + 1) (the ddpm x_t), and dx/dsigma =
// (x - x0) / sigma. As diffusers' EulerDiscreteScheduler and
// HeunDiscreteScheduler, with or without Karras sigmas.
#include <algorithm>
#include <cmath>

#include "diffusion_internal.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives::detail {
namespace {

class KarrasSampler : public Sampler {
 public:
  KarrasSampler(const char* name, const SamplerOptions& o)
      : name_(name), o_(o), spacing_(o.timestep_spacing.empty() ? "linspace" : o.timestep_spacing) {
    check_choice(name, "prediction", o.prediction, {"epsilon", "v_prediction", "sample"});
    check_choice(name, "timestep_spacing", spacing_, {"leading", "linspace", "trailing"});
    for (double s : sigmas_of(noise_schedule(o))) {
      table_.push_back(s);
      log_table_.push_back(std::log(s));
    }
  }

  // diffusers' rule: the largest sigma, or the ddpm-scaled sqrt(sigma^2 + 1) with leading spacing.
  double init_noise_sigma() const override {
    if (sigmas_.empty()) error(name_, ": init_noise_sigma before set_timesteps");
    const double max = *std::max_element(sigmas_.begin(), sigmas_.end());
    return spacing_ == "leading" ? std::sqrt(max * max + 1) : max;
  }
  Tensor scale_model_input(const Tensor& x, int64_t i) const override {
    if (i < 0 || i >= int64_t(timesteps_.size()))
      error(name_, ": model call ", i, " outside [0, ", timesteps_.size(), ") (set_timesteps first)");
    const double s = sigmas_[size_t(i)];
    return x / std::sqrt(s * s + 1);
  }

 protected:
  // The n timesteps and n + 1 sigmas (the last 0) of one step each, in f32
  // as diffusers holds them.
  void base_tables(int64_t n, std::vector<double>& t, std::vector<double>& sigma) const {
    const int64_t T = o_.num_train_timesteps;
    if (n < 1 || n > T) error(name_, ": ", n, " inference steps outside [1, num_train_timesteps = ", T, "]");
    t.clear();
    if (spacing_ == "linspace") {
      const std::vector<double> points = np_linspace(0, double(T - 1), n);  // not rounded, unlike ddpm's
      for (auto v = points.rbegin(); v != points.rend(); ++v) t.push_back(float(*v));
    } else {
      t = spaced_timesteps(spacing_, T, n, o_.steps_offset);
    }
    sigma.clear();
    for (double v : t) sigma.push_back(interp(v, table_));
    if (o_.karras) {
      sigma = karras_sigmas(sigma.back(), sigma.front(), n);
      for (size_t k = 0; k < sigma.size(); ++k) t[k] = sigma_to_t(sigma[k], log_table_);
    }
    for (double& v : t) v = float(v);
    for (double& v : sigma) v = float(v);
    sigma.push_back(0.0);
  }
  Tensor x0_of(const Tensor& out, const Tensor& x, double sigma) const {
    const Tensor x0 = karras_x0_from(o_.prediction, out, x, sigma);
    return o_.clip_sample ? clamp(x0, -o_.clip_sample_range, o_.clip_sample_range) : x0;
  }

  const char* name_;
  SamplerOptions o_;
  std::string spacing_;
  std::vector<double> table_, log_table_;  // sigma and log sigma at t = 0 .. T-1
};

class Euler final : public KarrasSampler {
 public:
  explicit Euler(const SamplerOptions& o) : KarrasSampler("euler", o) {}

  void set_timesteps(int64_t n) override { base_tables(n, timesteps_, sigmas_); }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor&) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    const double sigma = sigmas_[size_t(i)], next = sigmas_[size_t(i + 1)];
    const Tensor derivative = (x - x0_of(out, x, sigma)) / sigma;
    return x + derivative * (next - sigma);
  }
};

// Two model calls a step (the second at the Euler step's end, averaging
// the slopes) and one Euler step into sigma 0 at the end: 2n - 1 calls.
// Tables interleaved as diffusers': timesteps t0, t1, t1, ..., sigmas
// s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0, so sigmas()[i] is call i's sigma.
class Heun final : public KarrasSampler {
 public:
  explicit Heun(const SamplerOptions& o) : KarrasSampler("heun", o) {}

  void set_timesteps(int64_t n) override {
    std::vector<double> t, sigma;
    base_tables(n, t, sigma);
    t.resize(size_t(n)), sigma.resize(size_t(n));  // the n steps; interleave_heun appends the final 0
    interleave_heun(t, sigma, timesteps_, sigmas_);
    next_call_ = 0;
  }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor&) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    if (i != next_call_) error(name_, ": model call ", i, " out of order (expected ", next_call_, ")");
    ++next_call_;
    if (i % 2 == 0) {  // the Euler half
      const double sigma = sigmas_[size_t(i)];
      return heun_.first(x, (x - x0_of(out, x, sigma)) / sigma, sigmas_[size_t(i + 1)] - sigma);
    }
    const double sigma = sigmas_[size_t(i)];  // the end of the step
    return heun_.second((x - x0_of(out, x, sigma)) / sigma);
  }

 private:
  int64_t next_call_ = 0;
  HeunStep heun_;
};

}  // namespace

std::unique_ptr<Sampler> make_euler(const SamplerOptions& o) { return std::make_unique<Euler>(o); }
std::unique_ptr<Sampler> make_heun(const SamplerOptions& o) { return std::make_unique<Heun>(o); }

}  // namespace fm::objectives::detail

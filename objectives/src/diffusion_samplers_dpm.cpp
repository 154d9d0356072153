// DPM-Solver++(2M) (Lu et al. 2022): a multistep solver of the diffusion
// ODE in x0-prediction form, in log-SNR time lambda = log(alpha / sigma).
// Each step reuses the previous step's x0 for a second-order correction;
// the first step and the final one (into sigma 0) are first order. As
// diffusers' DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
// solver_order=2, solver_type="midpoint", final_sigmas_type="zero").
#include <cmath>

#include "diffusion_internal.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives::detail {
namespace {

class DpmSolver2M final : public Sampler {
 public:
  explicit DpmSolver2M(const SamplerOptions& o)
      : o_(o), spacing_(o.timestep_spacing.empty() ? "linspace" : o.timestep_spacing) {
    check_choice(name_, "prediction", o.prediction, {"epsilon", "v_prediction", "sample"});
    check_choice(name_, "timestep_spacing", spacing_, {"leading", "linspace", "trailing"});
    for (double s : sigmas_of(noise_schedule(o))) {
      table_.push_back(s);
      log_table_.push_back(std::log(s));
    }
  }

  void set_timesteps(int64_t n) override {
    const int64_t T = o_.num_train_timesteps;
    if (n < 1 || n >= T) error(name_, ": ", n, " inference steps outside [1, num_train_timesteps = ", T, ")");
    // n + 1 points from T - 1 down to 0, the last dropped.
    std::vector<double> t;
    if (spacing_ == "linspace") {
      const std::vector<double> points = np_linspace(0, double(T - 1), n + 1);
      for (int64_t k = n; k >= 1; --k) t.push_back(np_round(points[size_t(k)]));
    } else if (spacing_ == "leading") {
      for (int64_t k = n; k >= 1; --k) t.push_back(double(k * (T / (n + 1)) + o_.steps_offset));
    } else {
      t = spaced_timesteps(spacing_, T, n, o_.steps_offset);
    }
    std::vector<double> sigma;
    if (o_.karras) {
      sigma = karras_sigmas(table_.front(), table_.back(), n);
      // Rounded to integers as diffusers does; for the cosine schedule it
      // truncates instead (an integer cast), turning float32 roundoff such as
      // 998.99999996 into 998, and then fails on the repeated timesteps.
      for (size_t k = 0; k < sigma.size(); ++k) t[k] = np_round(sigma_to_t(sigma[k], log_table_));
    } else {
      for (double v : t) sigma.push_back(interp(v, table_));
    }
    timesteps_ = t;
    sigmas_.clear();
    for (double v : sigma) sigmas_.push_back(float(v));
    sigmas_.push_back(0.0);
    next_call_ = 0;
  }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor&) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    if (i != next_call_) error(name_, ": model call ", i, " out of order (expected ", next_call_, ")");
    ++next_call_;
    const double sigma_s = sigmas_[size_t(i)], sigma_t = sigmas_[size_t(i + 1)];
    const double alpha_s = 1 / std::sqrt(sigma_s * sigma_s + 1), alpha_t = 1 / std::sqrt(sigma_t * sigma_t + 1);
    const Tensor x0 = x0_from(o_.prediction, out, x, alpha_s, sigma_s * alpha_s);
    const double lambda_s = -std::log(sigma_s);
    const Tensor previous_x0 = previous_x0_;
    const double previous_lambda = previous_lambda_;
    previous_x0_ = x0;
    previous_lambda_ = lambda_s;
    if (sigma_t == 0) return x0;  // the first-order step into sigma 0 lands on x0

    const double h = -std::log(sigma_t) - lambda_s;
    const double c = -alpha_t * std::expm1(-h);  // -alpha_t (e^-h - 1)
    const Tensor first_order = x * (sigma_t * alpha_t / (sigma_s * alpha_s)) + x0 * c;
    if (i == 0) return first_order;
    const double r = (lambda_s - previous_lambda) / h;
    return first_order + (x0 - previous_x0) * (0.5 * c / r);
  }

 private:
  const char* name_ = "dpmpp_2m";
  SamplerOptions o_;
  std::string spacing_;
  std::vector<double> table_, log_table_;
  int64_t next_call_ = 0;
  Tensor previous_x0_;
  double previous_lambda_ = 0;
};

}  // namespace

std::unique_ptr<Sampler> make_dpmpp_2m(const SamplerOptions& o) { return std::make_unique<DpmSolver2M>(o); }

}  // namespace fm::objectives::detail

#pragma once
// What the diffusion sources share: option checks, the timestep tables
// (numpy's arithmetic, so tables equal diffusers' to the last bit where
// they are integers), Karras sigmas, and prediction conversions on f32
// tensors with double coefficients.
#include <cstdint>
#include <string>
#include <vector>

#include "fm/objectives/diffusion.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives::detail {

// Throws naming `option` and `value` unless value is one of `allowed`.
void check_choice(const char* where, const char* option, const std::string& value,
                  const std::vector<std::string>& allowed);

// numpy.linspace(start, stop, num) in double: start + k * step, the last exactly stop.
std::vector<double> np_linspace(double start, double stop, int64_t num);
// numpy.arange(start, stop, step) in double.
std::vector<double> np_arange(double start, double stop, double step);
// numpy.round: half to even.
double np_round(double x);

// The discrete timesteps (descending) for a spacing: linspace:
// round(linspace(0, T - 1, n)); leading: k * (T // n) + offset; trailing:
// round(arange(T, 0, -T / n)) - 1. As DDPMScheduler and DDIMScheduler.
std::vector<double> spaced_timesteps(const std::string& spacing, int64_t T, int64_t n, int64_t steps_offset);

// sigma = sqrt((1 - ab) / ab) for every t of the schedule.
std::vector<double> sigmas_of(const NoiseSchedule& s);
// Karras et al. (2022) sigmas, rho = 7, from sigma_max down to sigma_min in n.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n);
// The fractional t whose log sigma interpolates log_sigmas linearly (clamped
// to the table), as diffusers' _sigma_to_t.
double sigma_to_t(double sigma, const std::vector<double>& log_sigmas);
// Linear interpolation of table (at t = 0, 1, ...) at t, clamped (np.interp).
double interp(double t, const std::vector<double>& table);

// x0 from a prediction at x = alpha x0 + sigma eps.
Tensor x0_from(const std::string& prediction, const Tensor& out, const Tensor& x, double alpha, double sigma);
// eps from a prediction at x = alpha x0 + sigma eps (given its x0).
Tensor eps_from(const std::string& prediction, const Tensor& out, const Tensor& x, const Tensor& x0, double alpha,
                double sigma);
// x0 in the Karras form x = x0 + sigma eps, the network seeing x / sqrt(sigma^2 + 1).
Tensor karras_x0_from(const std::string& prediction, const Tensor& out, const Tensor& x, double sigma);

// Checks one step's tensors and that 0 <= i < calls (set_timesteps called).
void check_step(const char* sampler, const Tensor& model_output, int64_t i, const Tensor& x, int64_t calls);

// The samplers, one file per family.
std::unique_ptr<Sampler> make_ddpm(const SamplerOptions& o);
std::unique_ptr<Sampler> make_ddim(const SamplerOptions& o);
std::unique_ptr<Sampler> make_euler(const SamplerOptions& o);
std::unique_ptr<Sampler> make_heun(const SamplerOptions& o);
std::unique_ptr<Sampler> make_dpmpp_2m(const SamplerOptions& o);
std::unique_ptr<Sampler> make_flow_euler(const SamplerOptions& o);
std::unique_ptr<Sampler> make_flow_heun(const SamplerOptions& o);

// Heun's samplers (Karras and flow) share their bookkeeping: the tables
// hold the first sigma once and every later one twice (two model calls a
// step, as diffusers interleaves them), then the final 0; and a step is an
// Euler move whose slope is averaged with the end point's from the same start.
inline void interleave_heun(const std::vector<double>& t, const std::vector<double>& sigma,
                            std::vector<double>& timesteps, std::vector<double>& sigmas) {
  timesteps = {t[0]};
  sigmas = {sigma[0]};
  for (size_t k = 1; k < t.size(); ++k) {
    timesteps.insert(timesteps.end(), 2, t[k]);
    sigmas.insert(sigmas.end(), 2, sigma[k]);
  }
  sigmas.push_back(0.0);
}

class HeunStep {
 public:
  Tensor first(const Tensor& x, const Tensor& slope, double dt) {
    start_ = x, slope_ = slope, dt_ = dt;
    return x + slope * dt;
  }
  Tensor second(const Tensor& slope) const { return start_ + (slope_ + slope) * (0.5 * dt_); }

 private:
  Tensor start_, slope_;
  double dt_ = 0;
};

}  // namespace fm::objectives::detail

// Beta schedules and the timestep-table arithmetic the samplers share.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "diffusion_internal.h"

namespace fm::objectives {
namespace detail {

void check_choice(const char* where, const char* option, const std::string& value,
                  const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::ostringstream names;
  for (size_t k = 0; k < allowed.size(); ++k) names << (k ? ", " : "") << allowed[k];
  error(where, ": ", option, " '", value, "' is not one of ", names.str());
}

std::vector<double> np_linspace(double start, double stop, int64_t num) {
  std::vector<double> y(size_t(std::max<int64_t>(num, 0)));
  if (num == 1) y[0] = start;
  if (num < 2) return y;
  const double step = (stop - start) / double(num - 1);
  for (int64_t k = 0; k < num; ++k) y[size_t(k)] = double(k) * step + start;
  y.back() = stop;
  return y;
}

double np_round(double x) {
  const double r = std::round(x);
  return std::fabs(x - std::trunc(x)) == 0.5 ? 2.0 * std::round(x / 2.0) : r;
}

std::vector<double> spaced_timesteps(const std::string& spacing, int64_t T, int64_t n, int64_t steps_offset) {
  if (n < 1 || n > T) error("set_timesteps: ", n, " inference steps outside [1, num_train_timesteps = ", T, "]");
  std::vector<double> t;
  if (spacing == "linspace") {
    for (double v : np_linspace(0, double(T - 1), n)) t.push_back(np_round(v));
  } else if (spacing == "leading") {
    for (int64_t k = 0; k < n; ++k) t.push_back(double(k * (T / n) + steps_offset));
  } else if (spacing == "trailing") {
    // numpy's arange(T, 0, -T / n) has n + 1 entries for some n (61, 103,
    // ...) where T / n rounds down, the last a spurious -1 in diffusers; the
    // first n are these.
    const double ratio = double(T) / double(n);
    for (int64_t k = 0; k < n; ++k) t.push_back(np_round(double(T) - double(k) * ratio) - 1.0);
  } else {
    check_choice("set_timesteps", "timestep_spacing", spacing, {"leading", "linspace", "trailing"});
  }
  std::sort(t.rbegin(), t.rend());
  return t;
}

std::vector<double> sigmas_of(const NoiseSchedule& s) {
  std::vector<double> out;
  for (double ab : s.alphas_cumprod) out.push_back(std::sqrt((1.0 - ab) / ab));
  return out;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int64_t n) {
  const double rho = 7.0, lo = std::pow(sigma_min, 1.0 / rho), hi = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> out;
  for (double ramp : np_linspace(0.0, 1.0, n)) out.push_back(std::pow(hi + ramp * (lo - hi), rho));
  return out;
}

double sigma_to_t(double sigma, const std::vector<double>& log_sigmas) {
  const double ls = std::log(std::max(sigma, 1e-10));
  const int64_t last = int64_t(log_sigmas.size()) - 1;
  // The last table entry at or below log sigma (log_sigmas ascend with t).
  int64_t low = 0;
  for (int64_t j = 0; j <= last; ++j)
    if (log_sigmas[size_t(j)] <= ls) low = j;
  low = std::min(low, last - 1);
  const double lo = log_sigmas[size_t(low)], hi = log_sigmas[size_t(low + 1)];
  const double w = std::clamp((lo - ls) / (lo - hi), 0.0, 1.0);
  return (1.0 - w) * double(low) + w * double(low + 1);
}

double interp(double t, const std::vector<double>& table) {
  const double last = double(table.size() - 1);
  if (t <= 0) return table.front();
  if (t >= last) return table.back();
  const size_t k = size_t(std::floor(t));
  const double w = t - double(k);
  return w == 0 ? table[k] : table[k] + w * (table[k + 1] - table[k]);
}

}  // namespace detail

NoiseSchedule noise_schedule(const ScheduleOptions& o) {
  const int64_t T = o.num_train_timesteps;
  if (T < 1) error("noise_schedule: num_train_timesteps must be positive, got ", T);
  std::vector<double> betas;
  if (o.beta_schedule == "linear") {
    for (double b : detail::np_linspace(o.beta_start, o.beta_end, T)) betas.push_back(float(b));
  } else if (o.beta_schedule == "scaled_linear") {
    for (double r : detail::np_linspace(std::sqrt(o.beta_start), std::sqrt(o.beta_end), T)) {
      const double rf = float(r);
      betas.push_back(float(rf * rf));
    }
  } else if (o.beta_schedule == "cosine" || o.beta_schedule == "squaredcos_cap_v2") {
    // Nichol & Dhariwal's alpha_bar(t) = cos^2((t + s) / (1 + s) pi / 2), s = 0.008, betas capped at 0.999.
    auto alpha_bar = [](double t) { return std::pow(std::cos((t + 0.008) / 1.008 * M_PI / 2), 2); };
    for (int64_t i = 0; i < T; ++i)
      betas.push_back(float(std::min(1 - alpha_bar(double(i + 1) / T) / alpha_bar(double(i) / T), 0.999)));
  } else {
    detail::check_choice("noise_schedule", "beta_schedule", o.beta_schedule,
                         {"linear", "scaled_linear", "cosine", "squaredcos_cap_v2"});
  }
  NoiseSchedule s;
  double cumprod = 1.0;
  for (double b : betas) {
    if (!(b > 0 && b < 1))
      error("noise_schedule: beta_schedule '", o.beta_schedule, "' with beta_start ", o.beta_start, " and beta_end ",
            o.beta_end, " gives a beta of ", b, ", outside (0, 1)");
    cumprod *= double(float(1.0 - b));
    s.alphas_cumprod.push_back(float(cumprod));
  }
  s.betas = std::move(betas);
  return s;
}

}  // namespace fm::objectives

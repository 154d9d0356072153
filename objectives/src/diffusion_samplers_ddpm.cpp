// DDPM's ancestral sampler (Ho et al. 2020) and DDIM (Song et al. 2021),
// both stepping on alphas_cumprod at integer timesteps, as diffusers'
// DDPMScheduler (variance_type fixed_small) and DDIMScheduler.
#include <algorithm>
#include <cmath>

#include "diffusion_internal.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives::detail {
namespace {

// What DDPM and DDIM share: the schedule, the timesteps, x0 from a prediction.
class AlphaSampler : public Sampler {
 public:
  AlphaSampler(const char* name, const SamplerOptions& o)
      : name_(name), o_(o), schedule_(noise_schedule(o)),
        spacing_(o.timestep_spacing.empty() ? "leading" : o.timestep_spacing) {
    check_choice(name, "prediction", o.prediction, {"epsilon", "v_prediction", "sample"});
    check_choice(name, "timestep_spacing", spacing_, {"leading", "linspace", "trailing"});
    if (o.clip_sample && !(o.clip_sample_range > 0))
      error(name, ": clip_sample_range must be positive, got ", o.clip_sample_range);
  }

  void set_timesteps(int64_t n) override {
    const int64_t T = o_.num_train_timesteps;
    std::vector<double> t = spaced_timesteps(spacing_, T, n, o_.steps_offset);
    if (t.front() >= double(T) || t.back() < 0)
      error(name_, ": steps_offset ", o_.steps_offset, " moves timesteps outside [0, ", T, ") at ", n, " steps");
    timesteps_ = std::move(t);
    steps_ = n;
  }

 protected:
  double alpha_cumprod(double t) const { return schedule_.alphas_cumprod[size_t(t)]; }
  Tensor clipped(const Tensor& x0) const {
    return o_.clip_sample ? clamp(x0, -o_.clip_sample_range, o_.clip_sample_range) : x0;
  }
  const Tensor& noise_for(const Tensor& noise, const Tensor& x) const {
    if (!noise.defined() || noise.shape() != x.shape())
      error(name_, ": this step needs noise shaped like x ", x.shape());
    return noise;
  }

  const char* name_;
  SamplerOptions o_;
  NoiseSchedule schedule_;
  std::string spacing_;
  int64_t steps_ = 0;
};

// The posterior q(x_prev | x_t, x0) at the predicted x0, sampled with its
// own variance (fixed_small); no noise at t = 0.
class Ddpm final : public AlphaSampler {
 public:
  explicit Ddpm(const SamplerOptions& o) : AlphaSampler("ddpm", o) {}
  bool stochastic() const override { return true; }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor& noise) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    const double t = timesteps_[size_t(i)];
    const double ab = alpha_cumprod(t);
    const double ab_prev = size_t(i + 1) < timesteps_.size() ? alpha_cumprod(timesteps_[size_t(i + 1)]) : 1.0;
    const double alpha = ab / ab_prev, beta = 1 - alpha;
    const Tensor x0 = clipped(x0_from(o_.prediction, out, x, std::sqrt(ab), std::sqrt(1 - ab)));
    Tensor prev = x0 * (std::sqrt(ab_prev) * beta / (1 - ab)) + x * (std::sqrt(alpha) * (1 - ab_prev) / (1 - ab));
    if (t > 0) {
      const double variance = std::max((1 - ab_prev) / (1 - ab) * beta, 1e-20);
      prev = prev + noise_for(noise, x).to(x.dtype()) * std::sqrt(variance);
    }
    return prev;
  }
};

// x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - std^2) eps + std z, std =
// eta * sqrt of DDPM's posterior variance. The previous timestep is t - T // n
// whatever the spacing, as diffusers' DDIMScheduler does (with "linspace"
// it is not the next table entry).
class Ddim final : public AlphaSampler {
 public:
  explicit Ddim(const SamplerOptions& o) : AlphaSampler("ddim", o) {
    if (!(o.eta >= 0)) error("ddim: eta must be >= 0, got ", o.eta);
  }
  bool stochastic() const override { return o_.eta > 0; }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor& noise) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    const double t = timesteps_[size_t(i)];
    const double prev_t = t - double(o_.num_train_timesteps / steps_);
    const double ab = alpha_cumprod(t);
    const double ab_prev = prev_t >= 0 ? alpha_cumprod(prev_t)
                                       : (o_.set_alpha_to_one ? 1.0 : schedule_.alphas_cumprod.front());
    const double a = std::sqrt(ab), s = std::sqrt(1 - ab);
    Tensor x0 = x0_from(o_.prediction, out, x, a, s);
    const Tensor eps = eps_from(o_.prediction, out, x, x0, a, s);  // from the unclipped x0
    x0 = clipped(x0);
    const double variance = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev);
    const double std_dev = o_.eta * std::sqrt(variance);
    Tensor prev = x0 * std::sqrt(ab_prev) + eps * std::sqrt(std::max(1 - ab_prev - std_dev * std_dev, 0.0));
    if (o_.eta > 0) prev = prev + noise_for(noise, x).to(x.dtype()) * std_dev;
    return prev;
  }
};

}  // namespace

std::unique_ptr<Sampler> make_ddpm(const SamplerOptions& o) { return std::make_unique<Ddpm>(o); }
std::unique_ptr<Sampler> make_ddim(const SamplerOptions& o) { return std::make_unique<Ddim>(o); }

}  // namespace fm::objectives::detail

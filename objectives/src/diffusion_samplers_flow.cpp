// Flow matching samplers: x_t = (1 - t) x0 + t eps integrated from t = 1 to
// 0 along the predicted velocity dx/dt = eps - x0. As diffusers'
// FlowMatchEulerDiscreteScheduler and FlowMatchHeunDiscreteScheduler.
#include "diffusion_internal.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives::detail {
namespace {

class FlowSampler : public Sampler {
 public:
  FlowSampler(const char* name, const SamplerOptions& o) : name_(name), o_(o) {
    check_choice(name, "prediction", o.prediction, {"velocity"});
    if (!(o.shift > 0)) error(name, ": shift must be positive, got ", o.shift);
    if (o.num_train_timesteps < 1) error(name, ": num_train_timesteps must be positive");
  }

 protected:
  double shifted(double t) const { return o_.shift * t / (1 + (o_.shift - 1) * t); }
  // n sigmas from 1 down to the shifted 1 / T. diffusers shifts that
  // endpoint twice (once in its training table, again in set_timesteps);
  // kept, as it is what its models are sampled with. In f32 as it holds them.
  std::vector<double> base_sigmas(int64_t n) const {
    if (n < 1) error(name_, ": ", n, " inference steps (at least 1)");
    const double T = double(o_.num_train_timesteps);
    const float tf = float(1.0 / T);
    const double sigma_min = float(float(o_.shift * tf) / float(1.0 + float((o_.shift - 1) * tf)));
    std::vector<double> sigma;
    for (double v : np_linspace(T, sigma_min * T, n)) sigma.push_back(float(shifted(v / T)));
    return sigma;
  }
  double timestep_of(double sigma) const { return float(sigma * double(o_.num_train_timesteps)); }

  const char* name_;
  SamplerOptions o_;
};

class FlowEuler final : public FlowSampler {
 public:
  explicit FlowEuler(const SamplerOptions& o) : FlowSampler("flow_euler", o) {}

  void set_timesteps(int64_t n) override {
    sigmas_ = base_sigmas(n);
    timesteps_.clear();
    for (double s : sigmas_) timesteps_.push_back(timestep_of(s));
    sigmas_.push_back(0.0);
  }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor&) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    return x + out * (sigmas_[size_t(i + 1)] - sigmas_[size_t(i)]);
  }
};

// Heun as for the diffusion ODE (diffusion_samplers_karras.cpp): 2n - 1
// calls, tables interleaved t0, t1, t1, ..., the last step Euler into 0.
class FlowHeun final : public FlowSampler {
 public:
  explicit FlowHeun(const SamplerOptions& o) : FlowSampler("flow_heun", o) {}

  void set_timesteps(int64_t n) override {
    const std::vector<double> sigma = base_sigmas(n);
    std::vector<double> t;
    for (double v : sigma) t.push_back(timestep_of(v));
    interleave_heun(t, sigma, timesteps_, sigmas_);
    next_call_ = 0;
  }

  Tensor step(const Tensor& out, int64_t i, const Tensor& x, const Tensor&) override {
    check_step(name_, out, i, x, int64_t(timesteps_.size()));
    if (i != next_call_) error(name_, ": model call ", i, " out of order (expected ", next_call_, ")");
    ++next_call_;
    if (i % 2 == 0) return heun_.first(x, out, sigmas_[size_t(i + 1)] - sigmas_[size_t(i)]);
    return heun_.second(out);
  }

 private:
  int64_t next_call_ = 0;
  HeunStep heun_;
};

}  // namespace

std::unique_ptr<Sampler> make_flow_euler(const SamplerOptions& o) { return std::make_unique<FlowEuler>(o); }
std::unique_ptr<Sampler> make_flow_heun(const SamplerOptions& o) { return std::make_unique<FlowHeun>(o); }

}  // namespace fm::objectives::detail

#pragma once
// Diffusion objectives: DDPM (discrete noise schedules) and flow matching
// (rectified flow, as SD3), and the samplers that turn a trained denoiser
// into samples. Both follow diffusers (DDPMScheduler,
// FlowMatchEulerDiscreteScheduler and the samplers named below), and are
// checked against it with fixtures (tests/fixtures/make_diffusion_fixtures.py).
//
// Noise is always x_t = alpha * x0 + sigma * noise with noise ~ N(0, 1):
//   ddpm: alpha = sqrt(alphas_cumprod[t]), sigma = sqrt(1 - alphas_cumprod[t]), t integer in [0, T)
//   flow: alpha = 1 - t, sigma = t, t in [0, 1]
// and a network predicts one of (prediction types):
//   "epsilon"       the noise
//   "sample"        x0
//   "v_prediction"  alpha * noise - sigma * x0 (Salimans & Ho)
//   "velocity"      noise - x0, the flow's dx_t/dt (diffusers' FlowMatch convention)
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fm/tensor.h"

namespace fm {
class Generator;
}

namespace fm::objectives {

// The DDPM family's beta schedule (diffusers' names and defaults).
struct ScheduleOptions {
  std::string beta_schedule = "linear";  // "linear", "scaled_linear", "cosine" (= "squaredcos_cap_v2")
  int64_t num_train_timesteps = 1000;    // T
  double beta_start = 1e-4;              // linear and scaled_linear
  double beta_end = 0.02;
};

// The tables for t = 0 .. T-1. Values are those diffusers holds: each stage
// rounded to f32 as it computes them (betas, 1 - beta, the cumulative
// product accumulated in f64 and stored in f32), because sigma =
// sqrt((1 - ab) / ab) at small t amplifies the rounding of ab ~10^4 times,
// and Karras samplers place their last steps by it.
struct NoiseSchedule {
  std::vector<double> betas;
  std::vector<double> alphas_cumprod;
};
NoiseSchedule noise_schedule(const ScheduleOptions& o);

// ---------------------------------------------------------------- training

struct DiffusionOptions : ScheduleOptions {
  std::string process = "ddpm";        // "ddpm" or "flow"
  std::string prediction = "epsilon";  // ddpm: epsilon, v_prediction, sample; flow: velocity, epsilon, sample
  std::string t_sampling = "uniform";  // flow: "uniform" or "logit_normal" (t = sigmoid(N(logit_mean, logit_std)))
  double logit_mean = 0;
  double logit_std = 1;
  double shift = 1.0;          // flow: SD3's shift of drawn t, t' = shift t / (1 + (shift - 1) t)
  double min_snr_gamma = 0;    // 0 = off; else Min-SNR-gamma weights (Hang et al. 2023)
};

struct Noised {
  Tensor x_t;        // alpha * x0 + sigma * noise, x0's shape and dtype
  Tensor target;     // what the network should predict (the options' prediction type)
  Tensor timesteps;  // [B] f32, what the network is given: ddpm t, flow t * T (diffusers' sigma * 1000)
  Tensor weights;    // [B] f32, min-SNR weights or ones
  Tensor alpha;      // [B] f32
  Tensor sigma;      // [B] f32
};

// x0 and the noise a prediction implies at x_t = alpha * x0 + sigma * noise.
struct Denoised {
  Tensor x0;
  Tensor noise;
};

// prediction and x_t [B, ...]; alpha and sigma [B] (or 0-dim) broadcast over
// the trailing dims. Exact for any (alpha, sigma), so v_prediction and
// velocity also hold off their own process.
Denoised split_prediction(const Tensor& prediction, const Tensor& x_t, const Tensor& alpha, const Tensor& sigma,
                          const std::string& prediction_type);

class Diffusion {
 public:
  explicit Diffusion(DiffusionOptions o = {});
  const DiffusionOptions& options() const { return o_; }
  const NoiseSchedule& schedule() const { return schedule_; }  // ddpm only (empty for flow)

  // Draws t per sample (ddpm: integer uniform in [0, T); flow: per
  // t_sampling, then shifted), then noise ~ N(0, 1) like x0, from gen.
  Noised add_noise(const Tensor& x0, Generator& gen) const;
  // With t [B] given (ddpm: integers in [0, T); flow: in [0, 1], used as is,
  // no shift) and noise like x0: fixed validation timesteps and noise.
  Noised add_noise(const Tensor& x0, const Tensor& t, const Tensor& noise) const;

  // Mean over the batch of weight * per-sample mean squared error,
  // differentiable in prediction; computed in f32 (f64 stays f64).
  Tensor loss(const Tensor& prediction, const Noised& n) const;

  // x0 and noise implied by a prediction of this objective's type.
  Denoised split(const Tensor& prediction, const Noised& n) const;

  // Min-SNR-gamma weight of a sample at noise level (alpha, sigma): the x0
  // weight min(snr, gamma), snr = alpha^2 / sigma^2, carried to the prediction
  // type (epsilon: min(snr, g) / snr; v: min(snr, g) / (snr + 1) when alpha^2 +
  // sigma^2 = 1; sample: min(snr, g); velocity: min(snr, g) * t^2). 1 when off.
  double weight(double alpha, double sigma) const;

 private:
  Noised make(const Tensor& x0, const std::vector<double>& t, const Tensor& noise) const;
  DiffusionOptions o_;
  NoiseSchedule schedule_;
};

// ---------------------------------------------------------------- sampling

struct SamplerOptions : ScheduleOptions {
  std::string prediction = "epsilon";      // epsilon, v_prediction, sample; flow samplers: velocity
  std::string timestep_spacing = "";       // "leading", "linspace", "trailing"; "" = the sampler's diffusers default
  int64_t steps_offset = 0;
  bool clip_sample = false;                // ddpm, ddim, heun: clamp x0 to +-clip_sample_range
  double clip_sample_range = 1.0;
  double eta = 0;                          // ddim: 0 deterministic, 1 DDPM-like
  bool set_alpha_to_one = true;            // ddim: the final step lands on alpha_cumprod 1 (else alphas_cumprod[0])
  bool karras = true;                      // euler, heun, dpmpp_2m: Karras et al. sigmas (rho 7)
  double shift = 1.0;                      // flow samplers
};

// A sampler in diffusers' design: any denoiser can drive it. Model call i
// (0 <= i < timesteps().size()) passes scale_model_input(x, i) and
// timesteps()[i] to the network, then step() turns its output into the
// next sample. Samplers with state (heun, dpmpp_2m, flow_heun) expect the
// calls in order from i = 0 after set_timesteps.
class Sampler {
 public:
  virtual ~Sampler();
  virtual void set_timesteps(int64_t num_inference_steps) = 0;
  // The value given to the network at each model call (heun: two calls per
  // step, interleaved as diffusers does).
  const std::vector<double>& timesteps() const { return timesteps_; }
  // diffusers' scheduler.sigmas where it has them (euler, heun, dpmpp_2m:
  // sqrt((1 - ab) / ab); flow: t), with the final 0; empty otherwise.
  const std::vector<double>& sigmas() const { return sigmas_; }
  virtual double init_noise_sigma() const { return 1.0; }  // the initial sample is N(0, 1) * this
  // Identity unless the sampler scales (euler, heun: x / sqrt(sigma^2 + 1)).
  virtual Tensor scale_model_input(const Tensor& x, int64_t i) const { return x; }
  // One model call's update: the next sample. noise: N(0, 1) like x, read
  // by stochastic samplers (ddpm, ddim with eta > 0), else may be undefined.
  virtual Tensor step(const Tensor& model_output, int64_t i, const Tensor& x, const Tensor& noise) = 0;
  virtual bool stochastic() const { return false; }

 protected:
  std::vector<double> timesteps_;
  std::vector<double> sigmas_;
};

// name: "ddpm" (DDPMScheduler, fixed_small variance), "ddim" (DDIMScheduler),
// "euler" (EulerDiscreteScheduler), "heun" (HeunDiscreteScheduler),
// "dpmpp_2m" (DPMSolverMultistepScheduler, dpmsolver++, order 2, midpoint,
// first order at the final step), "flow_euler" (FlowMatchEulerDiscreteScheduler),
// "flow_heun" (FlowMatchHeunDiscreteScheduler).
std::unique_ptr<Sampler> make_sampler(const std::string& name, const SamplerOptions& o = {});

// The network: x [B, ...] and t [B] f32 (the model-facing timesteps) to a
// prediction of the sampler's type.
using Denoiser = std::function<Tensor(const Tensor& x, const Tensor& t)>;

// The whole loop, without autograd: set_timesteps(steps); x = noise *
// init_noise_sigma; at each model call i, x = step(d(scale_model_input(x, i),
// t_i), i, x, fresh N(0, 1) from gen (the default generator when null) if
// the sampler is stochastic).
Tensor sample(Sampler& s, const Denoiser& d, const Tensor& noise, int64_t steps, Generator* gen = nullptr);

}  // namespace fm::objectives

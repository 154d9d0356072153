// The sampler registry and the sampling loop.
#include "diffusion_internal.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops/elementwise.h"

namespace fm::objectives {

Sampler::~Sampler() = default;

namespace detail {

void check_step(const char* sampler, const Tensor& model_output, int64_t i, const Tensor& x, int64_t calls) {
  if (calls == 0) error(sampler, ": step before set_timesteps");
  if (i < 0 || i >= calls) error(sampler, ": model call ", i, " outside [0, ", calls, ")");
  if (!model_output.defined() || !x.defined()) error(sampler, ": step needs model_output and x");
  if (model_output.shape() != x.shape())
    error(sampler, ": model_output ", model_output.shape(), " and x ", x.shape(), " differ");
}

}  // namespace detail

std::unique_ptr<Sampler> make_sampler(const std::string& name, const SamplerOptions& o) {
  if (name == "ddpm") return detail::make_ddpm(o);
  if (name == "ddim") return detail::make_ddim(o);
  if (name == "euler") return detail::make_euler(o);
  if (name == "heun") return detail::make_heun(o);
  if (name == "dpmpp_2m") return detail::make_dpmpp_2m(o);
  if (name == "flow_euler") return detail::make_flow_euler(o);
  if (name == "flow_heun") return detail::make_flow_heun(o);
  detail::check_choice("make_sampler", "sampler", name,
                       {"ddpm", "ddim", "euler", "heun", "dpmpp_2m", "flow_euler", "flow_heun"});
  return nullptr;
}

Tensor sample(Sampler& s, const Denoiser& d, const Tensor& noise, int64_t steps, Generator* gen) {
  if (!noise.defined() || noise.dim() < 1) error("sample: noise must be [B, ...]");
  NoGradGuard no_grad;
  s.set_timesteps(steps);
  Tensor x = noise * s.init_noise_sigma();
  const int64_t B = x.size(0);
  for (size_t i = 0; i < s.timesteps().size(); ++i) {
    const Tensor t = full({B}, s.timesteps()[i], TensorOptions(DType::f32).device(x.device()));
    const Tensor out = d(s.scale_model_input(x, int64_t(i)), t);
    const Tensor z = s.stochastic() ? randn(x.shape(), x.options(), gen) : Tensor();
    x = s.step(out, int64_t(i), x, z);
  }
  return x;
}

}  // namespace fm::objectives

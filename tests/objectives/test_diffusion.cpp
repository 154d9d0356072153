// Diffusion objectives: the beta schedules, add_noise and the samplers
// against diffusers (tests/fixtures/make_diffusion_fixtures.py: tables,
// noising, and whole sampling trajectories driven by an analytic denoiser
// with diffusers' own step noise), then diffusers-free checks of the
// formulas, min-SNR weights, the loss and its gradient, and the errors.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>

#include "fm/objectives/diffusion.h"
#include "parity.h"

using namespace fm;
using namespace fm::objectives;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::rel_err;
using Fixture = fm::test::ParityFixture;

namespace {

constexpr double kTol = 1e-5;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

double number(const Fixture& f, const std::string& key) { return std::stod(f.meta(key)); }
bool flag(const Fixture& f, const std::string& key) { return f.meta(key) == "true"; }

void read_schedule(const Fixture& f, const std::string& p, ScheduleOptions& o) {
  o.beta_schedule = f.meta(p + "beta_schedule");
  o.num_train_timesteps = f.option(p + "num_train_timesteps");
  o.beta_start = number(f, p + "beta_start");
  o.beta_end = number(f, p + "beta_end");
}

SamplerOptions sampler_options(const Fixture& f, const std::string& c) {
  const std::string p = c + ".";
  SamplerOptions o;
  read_schedule(f, p, o);
  o.prediction = f.meta(p + "prediction");
  o.timestep_spacing = f.meta(p + "timestep_spacing");
  o.steps_offset = f.option(p + "steps_offset");
  o.clip_sample = flag(f, p + "clip_sample");
  o.clip_sample_range = number(f, p + "clip_sample_range");
  o.eta = number(f, p + "eta");
  o.set_alpha_to_one = flag(f, p + "set_alpha_to_one");
  o.karras = flag(f, p + "karras");
  o.shift = number(f, p + "shift");
  return o;
}

// The fixtures' denoiser (see make_diffusion_fixtures.py): the posterior
// mean for data ~ N(mu, data_std^2) at a nominal noise level for t.
double nominal_alpha_bar(double t, const ScheduleOptions& o) {
  const double T = double(o.num_train_timesteps), b0 = o.beta_start, b1 = o.beta_end, u = (t + 1) / T;
  if (o.beta_schedule == "linear") return std::exp(-T * (b0 * u + (b1 - b0) * u * u / 2));
  if (o.beta_schedule == "scaled_linear") {
    const double r0 = std::sqrt(b0), r1 = std::sqrt(b1);
    return std::exp(-T * (std::pow(r0 + (r1 - r0) * u, 3) - std::pow(r0, 3)) / (3 * (r1 - r0)));
  }
  auto f = [](double v) { return std::pow(std::cos((v + 0.008) / 1.008 * M_PI / 2), 2); };
  return f(u) / f(0);
}

struct PosteriorDenoiser {
  Tensor mu;
  double var;
  bool flow;
  SamplerOptions o;
  Tensor operator()(const Tensor& x, const Tensor& t) const {
    const std::vector<double> tv = t.to_vector<double>();
    std::vector<Tensor> outs;
    for (int64_t b = 0; b < x.size(0); ++b) {
      double a, s;
      if (flow) {
        s = tv[size_t(b)] / double(o.num_train_timesteps);
        a = 1 - s;
      } else {
        const double ab = nominal_alpha_bar(tv[size_t(b)], o);
        a = std::sqrt(ab), s = std::sqrt(1 - ab);
      }
      const Tensor xb = x.select(0, b).to(DType::f64), m = mu.select(0, b).to(DType::f64);
      const Tensor x0 = m + (xb - m * a) * (a * var) / (a * a * var + s * s);
      const Tensor eps = (xb - x0 * a) / s;
      Tensor out;
      if (o.prediction == "epsilon") out = eps;
      else if (o.prediction == "sample") out = x0;
      else if (o.prediction == "v_prediction") out = eps * a - x0 * s;
      else out = eps - x0;
      outs.push_back(out.to(DType::f32));
    }
    return stack(outs, 0);
  }
};

Tensor as_f64(const std::vector<double>& v) { return tensor(v); }

// Tables, then the trajectory: libfm's own samples all the way, each step's
// sample compared with diffusers' (each at its own scale), and the model
// output compared on diffusers' input so the denoiser is checked alone.
void check_sampler_file(const std::string& sampler) {
  const Fixture f("diffusion_sampler_" + sampler + ".safetensors");
  fm::test::Comparer cmp(f, kTol);
  const Tensor mu = f.get("mu");
  const double var = std::pow(number(f, "data_std"), 2);
  for (const std::string& c : split_list(f.meta("cases"))) {
    SCOPED_TRACE(sampler + " case " + c);
    const std::string p = c + ".";
    ASSERT_EQ(f.meta(p + "sampler"), sampler);
    const SamplerOptions o = sampler_options(f, c);
    std::unique_ptr<Sampler> s = make_sampler(sampler, o);
    const int64_t steps = f.option(p + "steps");
    s->set_timesteps(steps);
    cmp(c + " timesteps", as_f64(s->timesteps()), f.get(p + "timesteps"));
    if (f.has(p + "sigmas")) cmp(c + " sigmas", as_f64(s->sigmas()), f.get(p + "sigmas"));
    EXPECT_NEAR(s->init_noise_sigma(), number(f, p + "init_noise_sigma"), 1e-6 * s->init_noise_sigma());

    const PosteriorDenoiser d{mu, var, sampler.rfind("flow", 0) == 0, o};
    const Tensor expected_x = f.get(p + "x"), expected_out = f.get(p + "model_output");
    const Tensor step_noise = f.has(p + "step_noise") ? f.get(p + "step_noise") : Tensor();
    EXPECT_EQ(s->stochastic(), step_noise.defined());
    const int64_t calls = int64_t(s->timesteps().size());
    ASSERT_EQ(calls, expected_x.size(0));
    const Tensor noise = f.get(p + "noise");
    Tensor x = noise * s->init_noise_sigma();
    for (int64_t i = 0; i < calls; ++i) {
      const std::string at = c + " call " + std::to_string(i);
      const Tensor t = full({x.size(0)}, s->timesteps()[size_t(i)]);
      const Tensor theirs = i == 0 ? x : expected_x.select(0, i - 1);
      cmp(at + " model_output", d(s->scale_model_input(theirs, i), t), expected_out.select(0, i));
      const Tensor out = d(s->scale_model_input(x, i), t);
      x = s->step(out, i, x, step_noise.defined() ? step_noise.select(0, i) : Tensor());
      cmp(at + " sample", x, expected_x.select(0, i));
    }
    if (!s->stochastic()) {  // the same through sample()
      Tensor y = objectives::sample(*s, d, noise, steps, nullptr);
      cmp(c + " sample()", y, expected_x.select(0, calls - 1));
    }
  }
}

// The per-sample noise level of a ddpm or flow t, by hand.
void alpha_sigma(const Diffusion& dm, double t, double& a, double& s) {
  if (dm.options().process == "flow") {
    a = 1 - t, s = t;
  } else {
    const double ab = dm.schedule().alphas_cumprod[size_t(t)];
    a = std::sqrt(ab), s = std::sqrt(1 - ab);
  }
}

}  // namespace

TEST(DiffusionSchedule, MatchesDiffusers) {
  const Fixture f("diffusion_schedules.safetensors");
  double worst = 0;
  for (const std::string& c : split_list(f.meta("cases"))) {
    SCOPED_TRACE(c);
    ScheduleOptions o;
    read_schedule(f, c + ".", o);
    const NoiseSchedule s = noise_schedule(o);
    // Element by element: the small alphas_cumprod at large t count as much.
    EXPECT_TRUE(all_close(as_f64(s.betas), f.get(c + ".betas"), 1e-6, 0)) << "betas";
    EXPECT_TRUE(all_close(as_f64(s.alphas_cumprod), f.get(c + ".alphas_cumprod"), 1e-6, 0)) << "alphas_cumprod";
    const std::vector<double> ab = f.get(c + ".alphas_cumprod").to_vector<double>();
    for (size_t k = 0; k < ab.size(); ++k) worst = std::max(worst, std::fabs(s.alphas_cumprod[k] / ab[k] - 1));
  }
  std::cout << f.name() << ": max elementwise relative error of alphas_cumprod " << worst << "\n";
}

TEST(DiffusionAddNoise, MatchesDiffusers) {
  const Fixture f("diffusion_add_noise.safetensors");
  fm::test::Comparer cmp(f, kTol);
  for (const std::string& c : split_list(f.meta("cases"))) {
    const std::string p = c + ".";
    DiffusionOptions o;
    o.process = f.meta(p + "process");
    o.prediction = f.meta(p + "prediction");
    if (o.process == "ddpm") {
      o.beta_schedule = f.meta(p + "beta_schedule");
      o.beta_start = number(f, p + "beta_start");
      o.beta_end = number(f, p + "beta_end");
    }
    const Diffusion dm(o);
    const Noised n = dm.add_noise(f.get(p + "x0"), f.get(p + "t"), f.get(p + "noise"));
    cmp(c + " x_t", n.x_t, f.get(p + "x_t"));
    cmp(c + " target", n.target, f.get(p + "target"));
    cmp(c + " timesteps", n.timesteps, f.get(p + "timesteps"));
  }
}

TEST(DiffusionSamplers, DdpmMatchesDiffusers) { check_sampler_file("ddpm"); }
TEST(DiffusionSamplers, DdimMatchesDiffusers) { check_sampler_file("ddim"); }
TEST(DiffusionSamplers, EulerMatchesDiffusers) { check_sampler_file("euler"); }
TEST(DiffusionSamplers, HeunMatchesDiffusers) { check_sampler_file("heun"); }
TEST(DiffusionSamplers, DpmSolver2MMatchesDiffusers) { check_sampler_file("dpmpp_2m"); }
TEST(DiffusionSamplers, FlowEulerMatchesDiffusers) { check_sampler_file("flow_euler"); }
TEST(DiffusionSamplers, FlowHeunMatchesDiffusers) { check_sampler_file("flow_heun"); }

TEST(DiffusionAddNoise, IsTheFormula) {
  manual_seed(11);
  const Tensor x0 = randn({3, 2, 5}), noise = randn({3, 2, 5});
  const std::vector<double> x0v = x0.to_vector<double>(), nv = noise.to_vector<double>();
  struct Case {
    std::string process, prediction;
    std::vector<double> t;
  };
  for (const Case& c : {Case{"ddpm", "epsilon", {0, 417, 999}}, Case{"ddpm", "v_prediction", {3, 998, 500}},
                        Case{"ddpm", "sample", {999, 0, 1}}, Case{"flow", "velocity", {0, 0.3, 1}},
                        Case{"flow", "epsilon", {0.5, 0.01, 0.99}}}) {
    SCOPED_TRACE(c.process + " " + c.prediction);
    DiffusionOptions o;
    o.process = c.process;
    o.prediction = c.prediction;
    o.beta_schedule = "cosine";
    const Diffusion dm(o);
    const Noised n = dm.add_noise(x0, tensor(c.t), noise);
    std::vector<double> x_t, target, alpha, sigma;
    for (size_t k = 0; k < x0v.size(); ++k) {
      double a, s;
      alpha_sigma(dm, c.t[k / 10], a, s);
      if (k % 10 == 0) alpha.push_back(a), sigma.push_back(s);
      x_t.push_back(a * x0v[k] + s * nv[k]);
      if (c.prediction == "epsilon") target.push_back(nv[k]);
      if (c.prediction == "sample") target.push_back(x0v[k]);
      if (c.prediction == "v_prediction") target.push_back(a * nv[k] - s * x0v[k]);
      if (c.prediction == "velocity") target.push_back(nv[k] - x0v[k]);
    }
    EXPECT_TRUE(all_close(n.x_t, x_t, 1e-6, 1e-6)) << "x_t";
    EXPECT_TRUE(all_close(n.target, target, 1e-6, 1e-6)) << "target";
    EXPECT_TRUE(all_close(n.alpha, alpha, 1e-6, 1e-7)) << "alpha";
    EXPECT_TRUE(all_close(n.sigma, sigma, 1e-6, 1e-7)) << "sigma";
    std::vector<double> timesteps = c.t;
    if (c.process == "flow")
      for (double& v : timesteps) v *= 1000;
    EXPECT_TRUE(all_close(n.timesteps, timesteps, 1e-7, 0)) << "timesteps";
    EXPECT_TRUE(all_close(n.weights, {1, 1, 1}, 0, 0)) << "weights without min-SNR";
    EXPECT_EQ(n.timesteps.dtype(), DType::f32);
  }
}

TEST(DiffusionAddNoise, DrawsFromTheGenerator) {
  const Tensor x0 = zeros({64, 3});
  DiffusionOptions o;
  Generator g1(5), g2(5);
  const Noised a = Diffusion(o).add_noise(x0, g1), b = Diffusion(o).add_noise(x0, g2);
  EXPECT_TRUE(all_close(a.x_t, b.x_t, 0, 0)) << "same seed, same draw";
  for (double t : a.timesteps.to_vector<double>()) EXPECT_TRUE(t >= 0 && t < 1000 && t == std::floor(t)) << t;

  // Flow: logit-normal t in (0, 1), then SD3's shift of the same draws.
  o.process = "flow";
  o.prediction = "velocity";
  o.t_sampling = "logit_normal";
  o.logit_mean = 0.5;
  Generator g3(6), g4(6);
  const Noised plain = Diffusion(o).add_noise(x0, g3);
  o.shift = 3;
  const Noised shifted = Diffusion(o).add_noise(x0, g4);
  const std::vector<double> t = plain.sigma.to_vector<double>(), t3 = shifted.sigma.to_vector<double>();
  double mean_logit = 0;
  for (size_t k = 0; k < t.size(); ++k) {
    EXPECT_TRUE(t[k] > 0 && t[k] < 1) << t[k];
    EXPECT_NEAR(t3[k], 3 * t[k] / (1 + 2 * t[k]), 1e-6);
    mean_logit += std::log(t[k] / (1 - t[k])) / double(t.size());
  }
  EXPECT_NEAR(mean_logit, 0.5, 0.4);  // 64 draws of N(0.5, 1)
  EXPECT_TRUE(all_close(shifted.x_t, shifted.sigma.unsqueeze(1) * (shifted.target + x0), 1e-6, 1e-6));
}

TEST(DiffusionLoss, MinSnrWeightsAreTheFormula) {
  const double g = 5;
  const Tensor x0 = randn({256, 2});
  for (const std::string process : {"ddpm", "flow"}) {
    for (const std::string prediction : {"epsilon", "v_prediction", "sample", "velocity"}) {
      if ((process == "ddpm") == (prediction == "velocity") || (process == "flow" && prediction == "v_prediction"))
        continue;
      SCOPED_TRACE(process + " " + prediction);
      DiffusionOptions o;
      o.process = process;
      o.prediction = prediction;
      o.min_snr_gamma = g;
      Generator gen(9);
      const Noised n = Diffusion(o).add_noise(x0, gen);
      const std::vector<double> a = n.alpha.to_vector<double>(), s = n.sigma.to_vector<double>();
      std::vector<double> expected;
      int clipped = 0;
      for (size_t k = 0; k < a.size(); ++k) {
        const double snr = a[k] * a[k] / (s[k] * s[k]), m = std::min(snr, g);
        clipped += snr > g;
        if (prediction == "epsilon") expected.push_back(m / snr);
        if (prediction == "v_prediction") expected.push_back(m / (snr + 1));
        if (prediction == "sample") expected.push_back(m);
        if (prediction == "velocity") expected.push_back(m * s[k] * s[k]);  // t^2
      }
      EXPECT_GT(clipped, 10);
      EXPECT_LT(clipped, 246);
      EXPECT_TRUE(all_close(n.weights, expected, 1e-5, 1e-7));
    }
  }
}

TEST(DiffusionLoss, WeightedMeanOfPerSampleErrors) {
  manual_seed(12);
  DiffusionOptions o;
  o.prediction = "v_prediction";
  o.min_snr_gamma = 5;
  const Diffusion dm(o);
  const Noised n = dm.add_noise(randn({4, 3, 2}), tensor<double>({10, 200, 600, 990}), randn({4, 3, 2}));
  const Tensor prediction = randn({4, 3, 2});
  const std::vector<double> p = prediction.to_vector<double>(), t = n.target.to_vector<double>(),
                            w = n.weights.to_vector<double>();
  double expected = 0;
  for (size_t k = 0; k < p.size(); ++k) expected += w[k / 6] * (p[k] - t[k]) * (p[k] - t[k]) / 6 / 4;
  const Tensor loss = dm.loss(prediction, n);
  EXPECT_EQ(loss.dtype(), DType::f32);
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_NEAR(loss.item(), expected, 1e-6 * expected);
  EXPECT_EQ(dm.loss(prediction.to(DType::bf16), n).dtype(), DType::f32);
  EXPECT_EQ(dm.loss(n.target, n).item(), 0.0);
}

TEST(DiffusionLoss, Gradcheck) {
  manual_seed(13);
  for (const std::string process : {"ddpm", "flow"}) {
    DiffusionOptions o;
    o.process = process;
    o.prediction = process == "ddpm" ? "epsilon" : "velocity";
    o.min_snr_gamma = 2;
    const Diffusion dm(o);
    const Tensor t = process == "ddpm" ? tensor<double>({5, 300, 900}) : tensor<double>({0.1, 0.5, 0.9});
    const Noised n = dm.add_noise(randn({3, 4}), t, randn({3, 4}));
    EXPECT_TRUE(grads_ok([&](const std::vector<Tensor>& in) { return dm.loss(in[0], n); }, {fm::test::leaf({3, 4})}))
        << process;
  }
}

TEST(DiffusionPrediction, SplitRecoversX0AndNoise) {
  manual_seed(14);
  const Tensor x0 = randn({3, 2, 4}), noise = randn({3, 2, 4});
  for (const std::string process : {"ddpm", "flow"}) {
    for (const std::string prediction : {"epsilon", "v_prediction", "sample", "velocity"}) {
      if ((process == "ddpm") == (prediction == "velocity") || (process == "flow" && prediction == "v_prediction"))
        continue;
      SCOPED_TRACE(process + " " + prediction);
      DiffusionOptions o;
      o.process = process;
      o.prediction = prediction;
      const Diffusion dm(o);
      const Tensor t = process == "ddpm" ? tensor<double>({0, 500, 900}) : tensor<double>({0.05, 0.5, 0.95});
      const Noised n = dm.add_noise(x0, t, noise);
      const Denoised d = dm.split(n.target, n);
      EXPECT_TRUE(all_close(d.x0, x0, 1e-4, 1e-5)) << "x0";
      EXPECT_TRUE(all_close(d.noise, noise, 1e-4, 1e-5)) << "noise";
    }
  }
  // The general forms hold off their own process: v at flow's (alpha, sigma).
  const Tensor a = tensor<float>({0.2f, 0.7f, 0.9f}), s = 1.0 - a;
  const Tensor x_t = a.reshape({3, 1, 1}) * x0 + s.reshape({3, 1, 1}) * noise;
  const Denoised d = split_prediction(a.reshape({3, 1, 1}) * noise - s.reshape({3, 1, 1}) * x0, x_t, a, s,
                                      "v_prediction");
  EXPECT_TRUE(all_close(d.x0, x0, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(d.noise, noise, 1e-5, 1e-5));
}

TEST(DiffusionSamplers, StochasticSamplingFollowsTheGenerator) {
  SamplerOptions o;
  o.eta = 1;
  const Denoiser zero = [](const Tensor& x, const Tensor&) { return zeros_like(x); };
  const Tensor noise = randn({2, 3});
  for (const char* name : {"ddpm", "ddim"}) {
    std::unique_ptr<Sampler> s = make_sampler(name, o);
    Generator g1(1), g2(1), g3(2);
    const Tensor a = objectives::sample(*s, zero, noise, 5, &g1), b = objectives::sample(*s, zero, noise, 5, &g2);
    const Tensor c = objectives::sample(*s, zero, noise, 5, &g3);
    EXPECT_TRUE(all_close(a, b, 0, 0)) << name;
    EXPECT_GT(rel_err(a, c), 1e-3) << name;
  }
}

TEST(DiffusionSamplers, TimestepTables) {
  // Trailing spacing gives n steps where numpy's arange gives n + 1 (T / n
  // rounding down, e.g. n = 61), the extra one a timestep of -1 in diffusers.
  SamplerOptions o;
  o.timestep_spacing = "trailing";
  o.karras = false;
  for (const char* name : {"ddpm", "ddim", "euler", "dpmpp_2m"}) {
    std::unique_ptr<Sampler> s = make_sampler(name, o);
    s->set_timesteps(61);
    ASSERT_EQ(s->timesteps().size(), 61u) << name;
    EXPECT_EQ(s->timesteps().front(), 999) << name;
    EXPECT_EQ(s->timesteps().back(), 15) << name;  // round(1000 - 60 * 1000 / 61) - 1
  }
  // Heun's and flow Heun's tables interleave their second calls.
  for (const char* name : {"heun", "flow_heun"}) {
    o = {};
    if (std::string(name) == "flow_heun") o.prediction = "velocity";
    std::unique_ptr<Sampler> s = make_sampler(name, o);
    s->set_timesteps(4);
    const std::vector<double>& t = s->timesteps();
    ASSERT_EQ(t.size(), 7u) << name;
    EXPECT_TRUE(t[1] == t[2] && t[3] == t[4] && t[5] == t[6] && t[0] > t[1]) << name;
    EXPECT_EQ(s->sigmas().size(), 8u) << name;
    EXPECT_EQ(s->sigmas().back(), 0.0) << name;
  }
}

TEST(Diffusion, Errors) {
  expect_error([] { make_sampler("euler_a"); }, "ddpm, ddim, euler, heun, dpmpp_2m, flow_euler, flow_heun");
  SamplerOptions o;
  o.beta_schedule = "quadratic";
  expect_error([&] { make_sampler("ddpm", o); }, "beta_schedule 'quadratic'");
  o = {};
  o.prediction = "velocity";
  expect_error([&] { make_sampler("euler", o); }, "prediction 'velocity'");
  expect_error([] { make_sampler("flow_euler"); }, "prediction 'epsilon'");
  o = {};
  o.timestep_spacing = "uniform";
  expect_error([&] { make_sampler("ddim", o); }, "timestep_spacing 'uniform'");
  o = {};
  o.beta_end = 2;
  expect_error([&] { make_sampler("ddpm", o); }, "beta_end 2");
  std::unique_ptr<Sampler> ddpm = make_sampler("ddpm");
  const Tensor x = randn({1, 2});
  expect_error([&] { ddpm->step(x, 0, x, x); }, "before set_timesteps");
  expect_error([&] { ddpm->set_timesteps(1001); }, "1001 inference steps");
  ddpm->set_timesteps(10);
  expect_error([&] { ddpm->step(x, 0, x, Tensor()); }, "needs noise");
  expect_error([&] { ddpm->step(x, 10, x, x); }, "model call 10");
  expect_error([&] { ddpm->step(randn({2, 2}), 0, x, x); }, "differ");
  std::unique_ptr<Sampler> heun = make_sampler("heun");
  expect_error([&] { heun->init_noise_sigma(); }, "before set_timesteps");
  heun->set_timesteps(3);
  expect_error([&] { heun->step(x, 1, x, Tensor()); }, "out of order");

  DiffusionOptions d;
  d.process = "score";
  expect_error([&] { Diffusion{d}; }, "process 'score'");
  d = {};
  d.prediction = "velocity";
  expect_error([&] { Diffusion{d}; }, "prediction (process ddpm) 'velocity'");
  d = {};
  d.t_sampling = "logit_normal";
  expect_error([&] { Diffusion{d}; }, "t_sampling (process ddpm) 'logit_normal'");
  const Diffusion dm;
  const Tensor x0 = randn({2, 3});
  expect_error([&] { dm.add_noise(x0, tensor<double>({0, 1000}), x0); }, "t 1000");
  expect_error([&] { dm.add_noise(x0, tensor<double>({0, 1.5}), x0); }, "t 1.5");
  expect_error([&] { dm.add_noise(x0, tensor<double>({0}), x0); }, "t must be [B]");
  const Noised n = dm.add_noise(x0, tensor<double>({0, 1}), x0);
  expect_error([&] { dm.loss(randn({2, 4}), n); }, "prediction [2,4]");
}

// Optimizers and training utilities: AdamW and SGD step by step against
// PyTorch fixtures (tests/fixtures/make_optim_fixtures.py), with separate and
// flattened parameters; state round trips and load errors; schedules,
// gradient clipping, EMA and gradient accumulation against naive references.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "fm/io/safetensors.h"
#include "fm/nn/flat.h"
#include "fm/nn/layers.h"
#include "fm/optim/optim.h"
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
namespace fs = std::filesystem;

namespace {

fs::path fixture(const std::string& name) {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures" / name;
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures" / name;
}

// The fixtures' model: Linear(3, 5), GELU, Linear(5, 2).
class MLP : public nn::Module {
 public:
  MLP() {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions{3, 5}));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions{5, 2}));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(gelu(fc1->forward(x))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
};

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(std::vector<optim::ParamGroup>)>;

// One fixture file and the optimizer the script ran (same hyperparameters).
struct ParityCase {
  const char* file;
  double lr, weight_decay;
  MakeOptimizer make;
};

std::vector<ParityCase> parity_cases() {
  return {
      {"optim_adamw.safetensors", 0.05, 0.1,
       [](std::vector<optim::ParamGroup> g) {
         return std::make_unique<optim::AdamW>(std::move(g),
                                               optim::AdamWOptions{.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8});
       }},
      {"optim_sgd_nesterov.safetensors", 0.1, 0.01,
       [](std::vector<optim::ParamGroup> g) {
         return std::make_unique<optim::SGD>(std::move(g), optim::SGDOptions{.momentum = 0.9, .nesterov = true});
       }},
      {"optim_sgd_momentum.safetensors", 0.1, 0.01,
       [](std::vector<optim::ParamGroup> g) {
         return std::make_unique<optim::SGD>(std::move(g), optim::SGDOptions{.momentum = 0.9, .dampening = 0.5});
       }},
  };
}

enum class Layout { separate, flat, flat_params_separate_grads };

// Elements of a flat buffer that belong to no parameter must be zero.
void expect_padding_zero(const nn::FlatGroup& g) {
  std::vector<bool> used(size_t(g.data.numel()), false);
  for (const nn::FlatSlot& s : g.slots)
    for (int64_t i = 0; i < s.numel; ++i) used[size_t(s.offset + i)] = true;
  const std::vector<double> data = g.data.to_vector<double>(), grad = g.grad.to_vector<double>();
  int64_t gaps = 0;
  for (size_t i = 0; i < used.size(); ++i) {
    if (used[i]) continue;
    ++gaps;
    EXPECT_EQ(data[i], 0.0) << "padding element " << i;
    EXPECT_EQ(grad[i], 0.0) << "padding element " << i;
  }
  EXPECT_GT(gaps, 0);  // the fixture's shapes do leave padding
}

void run_parity(const ParityCase& c, Layout layout) {
  SCOPED_TRACE(std::string(c.file) + " layout " + std::to_string(int(layout)));
  const io::Safetensors f = io::load_safetensors(fixture(c.file).string());
  auto at = [&](const std::string& key) { return f.tensors.at(key); };
  MLP net;
  nn::StateDict init;
  for (const auto& p : net.named_parameters()) init[p.name] = at("init." + p.name);
  net.load_state_dict(init);
  std::optional<nn::FlatParameters> flat;
  if (layout != Layout::separate) flat = nn::flatten_parameters(net);
  std::unique_ptr<optim::Optimizer> opt = c.make(optim::default_groups(net, c.lr, c.weight_decay));
  if (layout == Layout::flat) {
    EXPECT_EQ(opt->fused_runs(),
              (std::vector<std::vector<std::string>>{{"fc1.weight", "fc2.weight"}, {"fc1.bias", "fc2.bias"}}));
  }
  for (int t = 0; t < 10; ++t) {
    opt->set_lr(c.lr * (1 - 0.05 * t));
    for (const auto& p : net.named_parameters()) {
      const Tensor g = at("grad." + std::to_string(t) + "." + p.name);
      if (layout == Layout::flat) {
        NoGradGuard ng;
        p.tensor.grad().copy_(g);  // the flat gradient buffer stays in place
      } else {
        p.tensor.set_grad(g.clone());
      }
    }
    opt->step();
    EXPECT_EQ(opt->last_step_calls(), layout == Layout::flat ? 2 : 4);
    for (const auto& p : net.named_parameters())
      EXPECT_TRUE(all_close(p.tensor, at("param." + std::to_string(t) + "." + p.name), 1e-6, 1e-7))
          << "step " << t << " " << p.name;
  }
  EXPECT_EQ(opt->step_count(), 10);
  if (layout == Layout::flat) expect_padding_zero(flat->groups.at(0));
}

// Random gradients for every parameter of `m`, one set per step.
std::vector<std::vector<Tensor>> random_grads(const nn::Module& m, int steps) {
  std::vector<std::vector<Tensor>> out(static_cast<size_t>(steps));
  for (auto& step : out)
    for (const auto& p : m.named_parameters()) step.push_back(randn(p.tensor.shape()));
  return out;
}

// Copies the step's gradients in (into flat buffers when there are any).
void feed(const nn::Module& m, const std::vector<Tensor>& grads) {
  NoGradGuard ng;
  const auto params = m.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].tensor.grad().defined())
      params[i].tensor.grad().copy_(grads[i]);
    else
      params[i].tensor.set_grad(grads[i].clone());
  }
}

std::map<std::string, Tensor> snapshot(const std::map<std::string, Tensor>& sd) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : sd) out[name] = t.clone();
  return out;
}

}  // namespace

TEST(OptimParity, MatchesPyTorchWithSeparateParameters) {
  for (const ParityCase& c : parity_cases()) run_parity(c, Layout::separate);
}

TEST(OptimParity, MatchesPyTorchWithFlattenedModuleInOneCallPerGroup) {
  for (const ParityCase& c : parity_cases()) run_parity(c, Layout::flat);
}

TEST(OptimParity, MatchesPyTorchWithFlatParametersButSeparateGradients) {
  for (const ParityCase& c : parity_cases()) run_parity(c, Layout::flat_params_separate_grads);
}

TEST(Optimizer, StateDictRoundTripContinuesIdentically) {
  const fs::path dir = fs::temp_directory_path() / ("fm_optim_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::vector<MakeOptimizer> makers = {
      [](std::vector<optim::ParamGroup> g) {
        return std::make_unique<optim::AdamW>(std::move(g), optim::AdamWOptions{});
      },
      [](std::vector<optim::ParamGroup> g) {
        return std::make_unique<optim::SGD>(std::move(g), optim::SGDOptions{.momentum = 0.9, .nesterov = true});
      },
  };
  for (const MakeOptimizer& make : makers) {
    manual_seed(11);
    MLP a;
    nn::flatten_parameters(a);
    auto opt_a = make(optim::default_groups(a, 0.01, 0.1));
    const auto grads = random_grads(a, 10);
    for (int t = 0; t < 5; ++t) {
      feed(a, grads[size_t(t)]);
      opt_a->step();
    }
    io::save_safetensors((dir / "model.safetensors").string(), a.state_dict());
    io::save_safetensors((dir / "optim.safetensors").string(), opt_a->state_dict());
    for (int t = 5; t < 10; ++t) {
      feed(a, grads[size_t(t)]);
      opt_a->step();
    }

    // A fresh model, not flattened: the state is keyed by name, not layout.
    MLP b;
    b.load_state_dict(io::load_safetensors((dir / "model.safetensors").string()).tensors);
    auto opt_b = make(optim::default_groups(b, 0.01, 0.1));
    opt_b->load_state_dict(io::load_safetensors((dir / "optim.safetensors").string()).tensors);
    EXPECT_EQ(opt_b->step_count(), 5);
    for (int t = 5; t < 10; ++t) {
      feed(b, grads[size_t(t)]);
      opt_b->step();
    }
    const auto pa = a.named_parameters(), pb = b.named_parameters();
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(all_close(pb[i].tensor, pa[i].tensor, 0, 0)) << pa[i].name;
    const auto sa = opt_a->state_dict(), sb = opt_b->state_dict();
    for (const auto& [name, t] : sa) EXPECT_TRUE(all_close(sb.at(name), t, 0, 0)) << name;
  }
  fs::remove_all(dir);
}

TEST(Optimizer, StateDictNamesViewsAndStep) {
  MLP m;
  optim::AdamW opt(m, {});
  feed(m, random_grads(m, 1)[0]);
  opt.step();
  const auto sd = opt.state_dict();
  EXPECT_EQ(sd.size(), 2 * 4 + 1u);
  EXPECT_EQ(sd.at("exp_avg.fc1.weight").shape(), Shape({5, 3}));
  EXPECT_EQ(sd.at("exp_avg_sq.fc2.bias").shape(), Shape({2}));
  EXPECT_EQ(sd.at("step").dtype(), DType::i64);
  EXPECT_EQ(sd.at("step").dim(), 0);
  EXPECT_EQ(sd.at("step").item(), 1);
  // After one step m = (1 - beta1) g and v = (1 - beta2) g^2.
  const Tensor g = m.fc1->weight.grad();
  EXPECT_TRUE(all_close(sd.at("exp_avg.fc1.weight"), g * 0.1, 1e-6, 1e-7));
  EXPECT_TRUE(all_close(sd.at("exp_avg_sq.fc1.weight"), g * g * 0.001, 1e-5, 1e-9));

  optim::SGD plain(m, {.lr = 0.1});
  EXPECT_EQ(plain.state_dict().size(), 1u);  // no momentum, no buffers
  optim::SGD heavy(m, {.lr = 0.1, .momentum = 0.9});
  EXPECT_EQ(heavy.state_dict().count("momentum.fc2.weight"), 1u);
}

TEST(Optimizer, LoadStateDictListsEveryMismatchAndChangesNothing) {
  MLP m;
  optim::AdamW opt(m, {});
  feed(m, random_grads(m, 1)[0]);
  opt.step();
  const auto before = snapshot(opt.state_dict());
  auto bad = snapshot(before);
  bad.erase("exp_avg.fc1.weight");
  bad["exp_avg_sq.fc2.bias"] = zeros({3});
  bad["momentum.fc1.weight"] = zeros({5, 3});
  bad["exp_avg.fc2.weight"] = full({2, 5}, 7.0);  // valid alone; must not be applied
  try {
    opt.load_state_dict(bad);
    FAIL() << "expected fm::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("AdamW::load_state_dict"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing: exp_avg.fc1.weight;"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected: momentum.fc1.weight;"), std::string::npos) << msg;
    EXPECT_NE(msg.find("exp_avg_sq.fc2.bias (given [3], expected [2])"), std::string::npos) << msg;
  }
  auto bad_step = snapshot(before);
  bad_step["step"] = scalar_tensor(-1, DType::i64);
  EXPECT_THROW(opt.load_state_dict(bad_step), Error);
  const auto after = opt.state_dict();
  for (const auto& [name, t] : before) EXPECT_TRUE(all_close(after.at(name), t, 0, 0)) << name;
  EXPECT_EQ(opt.step_count(), 1);
}

TEST(Optimizer, DefaultGroupsSplitByTag) {
  MLP m;
  m.fc2->weight.requires_grad_(false);  // frozen parameters are left out
  const auto groups = optim::default_groups(m, 0.1, 0.2);
  ASSERT_EQ(groups.size(), 2u);
  ASSERT_EQ(groups[0].params.size(), 1u);
  EXPECT_EQ(groups[0].params[0].name, "fc1.weight");
  EXPECT_EQ(groups[0].weight_decay, 0.2);
  ASSERT_EQ(groups[1].params.size(), 2u);
  EXPECT_EQ(groups[1].params[0].name, "fc1.bias");
  EXPECT_EQ(groups[1].params[1].name, "fc2.bias");
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  EXPECT_EQ(groups[1].lr, 0.1);
}

TEST(Optimizer, SetLrAppliesEachGroupsScale) {
  MLP m;
  auto groups = optim::default_groups(m, 0.1, 0.0);
  groups[1].lr_scale = 0.5;
  optim::SGD opt(std::move(groups), {});
  opt.set_lr(0.4);
  EXPECT_DOUBLE_EQ(opt.param_groups()[0].lr, 0.4);
  EXPECT_DOUBLE_EQ(opt.param_groups()[1].lr, 0.2);
  // Plain SGD: p -= lr * g, with each group's lr.
  const Tensor w0 = m.fc1->weight.clone(), b0 = m.fc1->bias.clone();
  feed(m, random_grads(m, 1)[0]);
  opt.step();
  EXPECT_TRUE(all_close(m.fc1->weight, w0 - m.fc1->weight.grad() * 0.4, 1e-6, 1e-7));
  EXPECT_TRUE(all_close(m.fc1->bias, b0 - m.fc1->bias.grad() * 0.2, 1e-6, 1e-7));
  EXPECT_THROW(opt.set_lr(-1), Error);
}

TEST(Optimizer, ZeroGradKeepsTheBuffers) {
  MLP m;
  auto flat = nn::flatten_parameters(m);
  optim::AdamW opt(m, {});
  feed(m, random_grads(m, 1)[0]);
  void* flat_grad = flat.groups[0].grad.data_ptr();
  opt.zero_grad();
  EXPECT_EQ(flat.groups[0].grad.data_ptr(), flat_grad);
  EXPECT_EQ(m.fc1->weight.grad().data_ptr(), flat_grad);
  EXPECT_EQ(sum(abs(flat.groups[0].grad)).item(), 0.0);
  // Separate gradients are zeroed in place too.
  MLP s;
  optim::SGD sgd(s, {.lr = 0.1});
  feed(s, random_grads(s, 1)[0]);
  void* g = s.fc2->bias.grad().data_ptr();
  sgd.zero_grad();
  EXPECT_EQ(s.fc2->bias.grad().data_ptr(), g);
  EXPECT_EQ(sum(abs(s.fc2->bias.grad())).item(), 0.0);
}

TEST(Optimizer, RunsNeverSpanAnotherParameter) {
  // Three views of one buffer; b's group neighbour a is 2 elements before
  // it, but x (another group) lies between them.
  Tensor buf = zeros({48});
  Tensor a = buf.narrow(0, 0, 10).requires_grad_(), x = buf.narrow(0, 10, 2).requires_grad_(),
         b = buf.narrow(0, 12, 10).requires_grad_(), c = buf.narrow(0, 40, 4).requires_grad_();
  optim::SGD split({{{{"a", a}, {"b", b}}, 0.1, 0}, {{{"x", x}}, 0.1, 0}}, {});
  EXPECT_EQ(split.fused_runs(), (std::vector<std::vector<std::string>>{{"a"}, {"b"}, {"x"}}));
  // Padding shorter than 16 elements joins a run; a longer gap does not.
  optim::SGD joined({{{{"a", a}, {"b", b}, {"c", c}}, 0.1, 0}}, {});
  EXPECT_EQ(joined.fused_runs(), (std::vector<std::vector<std::string>>{{"a", "b"}, {"c"}}));
  EXPECT_THROW(optim::SGD({{{{"a", a}, {"a2", buf.narrow(0, 5, 10).requires_grad_()}}, 0.1, 0}}, {}), Error);
}

TEST(Optimizer, FollowsParametersMovedAfterConstruction) {
  Tensor buf = zeros({32});
  Tensor a = buf.narrow(0, 0, 10).requires_grad_(), b = buf.narrow(0, 12, 10).requires_grad_();
  optim::SGD opt({{{{"a", a}, {"b", b}}, 0.1, 0}}, {});
  ASSERT_EQ(opt.fused_runs(), (std::vector<std::vector<std::string>>{{"a", "b"}}));
  const Tensor b0 = randn({10});
  nn::rebind(b, b0.clone());  // b now lives elsewhere: the run must split
  a.set_grad(ones({10}));
  b.set_grad(ones({10}));
  opt.step();
  EXPECT_EQ(opt.last_step_calls(), 2);
  EXPECT_TRUE(all_close(a, std::vector<double>(10, -0.1), 1e-6, 1e-7));
  EXPECT_TRUE(all_close(b, b0 - 0.1, 1e-6, 1e-7));
  EXPECT_NEAR(sum(abs(buf)).item(), 1.0, 1e-6);  // only a's ten elements changed

  MLP m;
  nn::flatten_parameters(m);
  optim::AdamW adamw(m, {});
  m.to(DType::f64);  // the state stays f32: refused with a hint
  feed(m, random_grads(m, 1)[0]);
  EXPECT_THROW(adamw.step(), Error);
}

TEST(Optimizer, RejectsBadSettings) {
  MLP m;
  EXPECT_THROW(optim::AdamW(m, {.beta1 = 1.0}), Error);
  EXPECT_THROW(optim::AdamW(m, {.eps = -1}), Error);
  EXPECT_THROW(optim::SGD(m, {.momentum = 0, .nesterov = true}), Error);
  EXPECT_THROW(optim::SGD(m, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}), Error);
  EXPECT_THROW(optim::SGD(m, {.lr = -0.1}), Error);
  EXPECT_THROW(optim::SGD(std::vector<optim::ParamGroup>{}, {}), Error);
  Tensor w = randn({3}).requires_grad_();
  EXPECT_THROW(optim::SGD({{{{"w", w}, {"w", randn({2}).requires_grad_()}}, 0.1, 0}}, {}), Error);  // name twice
  EXPECT_THROW(optim::SGD({{{{"w", w}, {"v", w}}, 0.1, 0}}, {}), Error);                            // tensor twice
  EXPECT_THROW(optim::SGD({{{{"h", randn({3}).to(DType::bf16).requires_grad_()}}, 0.1, 0}}, {}), Error);
  // A gradient of another dtype is reported by name before anything changes.
  optim::SGD sgd({{{{"w", w}}, 0.1, 0}}, {});
  w.set_grad(zeros({3}, DType::f64));
  EXPECT_THROW(sgd.step(), Error);
  EXPECT_EQ(sgd.step_count(), 0);
}

TEST(OptimKernels, AdamWAndSGDMatchNaiveLoopsOnLongF64Buffers) {
  // Long enough for the parallel path; f64 so the reference agrees closely.
  const int64_t n = 100003;
  Tensor p = randn({n}, DType::f64).requires_grad_();
  const std::vector<double> p0 = p.to_vector<double>();
  std::vector<std::vector<double>> grads;
  optim::AdamW adamw({{{{"p", p}}, 0.01, 0.1}}, {.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6});
  std::vector<double> ref = p0, m(size_t(n), 0), v(size_t(n), 0);
  for (int t = 1; t <= 3; ++t) {
    Tensor g = randn({n}, DType::f64);
    p.set_grad(g);
    adamw.step();
    const std::vector<double> gv = g.to_vector<double>();
    for (size_t i = 0; i < size_t(n); ++i) {
      ref[i] *= 1 - 0.01 * 0.1;
      m[i] = 0.8 * m[i] + 0.2 * gv[i];
      v[i] = 0.99 * v[i] + 0.01 * gv[i] * gv[i];
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(0.99, t)) + 1e-6;
      ref[i] -= 0.01 / (1 - std::pow(0.8, t)) * m[i] / denom;
    }
  }
  EXPECT_TRUE(all_close(p, ref, 1e-12, 1e-13));

  Tensor q = randn({n}, DType::f64).requires_grad_();
  std::vector<double> qref = q.to_vector<double>(), buf(size_t(n), 0);
  optim::SGD sgd({{{{"q", q}}, 0.05, 0.01}}, {.momentum = 0.9, .dampening = 0.3});
  for (int t = 1; t <= 3; ++t) {
    Tensor g = randn({n}, DType::f64);
    q.set_grad(g);
    sgd.step();
    const std::vector<double> gv = g.to_vector<double>();
    for (size_t i = 0; i < size_t(n); ++i) {
      const double d = gv[i] + 0.01 * qref[i];
      buf[i] = t == 1 ? d : 0.9 * buf[i] + 0.7 * d;
      qref[i] -= 0.05 * buf[i];
    }
  }
  EXPECT_TRUE(all_close(q, qref, 1e-12, 1e-13));
}

TEST(LRSchedule, MatchesTheFormulas) {
  optim::LRSchedule cosine{.kind = "cosine", .lr = 1.0, .min_lr = 0.1, .warmup_steps = 10, .max_steps = 110};
  EXPECT_DOUBLE_EQ(cosine.at(0), 0.1);
  EXPECT_DOUBLE_EQ(cosine.at(4), 0.5);
  EXPECT_DOUBLE_EQ(cosine.at(9), 1.0);
  EXPECT_DOUBLE_EQ(cosine.at(10), 1.0);
  EXPECT_DOUBLE_EQ(cosine.at(35), 0.1 + 0.45 * (1 + std::cos(M_PI * 0.25)));
  EXPECT_DOUBLE_EQ(cosine.at(60), 0.55);
  EXPECT_NEAR(cosine.at(109), 0.1 + 0.45 * (1 + std::cos(M_PI * 0.99)), 1e-15);
  EXPECT_DOUBLE_EQ(cosine.at(110), 0.1);
  EXPECT_DOUBLE_EQ(cosine.at(1000), 0.1);

  optim::LRSchedule linear{.kind = "linear", .lr = 2.0, .min_lr = 0.0, .warmup_steps = 0, .max_steps = 100};
  EXPECT_DOUBLE_EQ(linear.at(0), 2.0);
  EXPECT_DOUBLE_EQ(linear.at(25), 1.5);
  EXPECT_DOUBLE_EQ(linear.at(100), 0.0);

  optim::LRSchedule constant{.kind = "constant", .lr = 3e-4, .warmup_steps = 4};
  EXPECT_DOUBLE_EQ(constant.at(1), 1.5e-4);
  EXPECT_DOUBLE_EQ(constant.at(4), 3e-4);
  EXPECT_DOUBLE_EQ(constant.at(1000000), 3e-4);

  EXPECT_THROW((optim::LRSchedule{.kind = "step", .lr = 1, .max_steps = 10}).at(0), Error);
  EXPECT_THROW((optim::LRSchedule{.kind = "cosine", .lr = 1, .warmup_steps = 10, .max_steps = 10}).at(0), Error);
  EXPECT_THROW((optim::LRSchedule{.kind = "cosine", .lr = 1, .min_lr = 2, .max_steps = 10}).at(0), Error);
  EXPECT_THROW((optim::LRSchedule{.kind = "linear", .lr = -1, .max_steps = 10}).at(0), Error);
  EXPECT_THROW((optim::LRSchedule{.kind = "constant", .lr = 1, .warmup_steps = -1}).at(0), Error);
  EXPECT_THROW(constant.at(-1), Error);
}

TEST(ClipGradNorm, MatchesANaiveNormAndScales) {
  for (bool flat : {false, true}) {
    MLP m;
    std::optional<nn::FlatParameters> fp;
    if (flat) fp = nn::flatten_parameters(m);
    feed(m, random_grads(m, 1)[0]);
    m.fc2->bias.set_grad(Tensor());  // no gradient: skipped
    double naive = 0;
    std::vector<std::vector<double>> before;
    for (const Tensor& p : m.parameters()) {
      before.push_back(p.grad().defined() ? p.grad().to_vector<double>() : std::vector<double>{});
      for (double g : before.back()) naive += g * g;
    }
    naive = std::sqrt(naive);
    // Above the norm: nothing changes.
    EXPECT_NEAR(optim::clip_grad_norm(m.parameters(), naive * 2), naive, 1e-6 * naive);
    const auto params = m.parameters();
    for (size_t i = 0; i < params.size(); ++i)
      if (params[i].grad().defined()) EXPECT_TRUE(all_close(params[i].grad(), before[i], 0, 0));
    // Below: scaled by max_norm / (norm + 1e-6), the returned norm is the old one.
    const double max_norm = naive / 4;
    EXPECT_NEAR(optim::clip_grad_norm(params, max_norm), naive, 1e-6 * naive);
    const double scale = max_norm / (naive + 1e-6);
    double after = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].grad().defined()) continue;
      std::vector<double> expect;
      for (double g : before[i]) expect.push_back(g * scale);
      EXPECT_TRUE(all_close(params[i].grad(), expect, 1e-6, 1e-7));
      for (double g : params[i].grad().to_vector<double>()) after += g * g;
    }
    EXPECT_NEAR(std::sqrt(after), max_norm, 1e-5 * max_norm);
    if (flat) expect_padding_zero(fp->groups[0]);
  }
  EXPECT_THROW(optim::clip_grad_norm({}, 0.0), Error);
  EXPECT_EQ(optim::clip_grad_norm({randn({3}).requires_grad_()}, 1.0), 0.0);
}

TEST(EMA, MatchesANaiveLoop) {
  MLP m;
  optim::EMA ema(m, 0.9);
  std::map<std::string, std::vector<double>> naive;
  for (const auto& p : m.named_parameters()) naive[p.name] = p.tensor.to_vector<double>();
  for (int t = 0; t < 4; ++t) {
    {
      NoGradGuard ng;
      for (const auto& p : m.named_parameters()) Tensor(p.tensor).copy_(randn(p.tensor.shape()));
    }
    ema.update(m);
    for (const auto& p : m.named_parameters()) {
      const std::vector<double> v = p.tensor.to_vector<double>();
      for (size_t i = 0; i < v.size(); ++i) naive[p.name][i] = 0.9 * naive[p.name][i] + 0.1 * v[i];
    }
  }
  const nn::StateDict sd = ema.state_dict();
  ASSERT_EQ(sd.size(), 4u);
  for (const auto& [name, values] : naive) EXPECT_TRUE(all_close(sd.at(name), values, 1e-6, 1e-7)) << name;

  // copy_to writes the shadow into a model; load_state_dict restores one.
  MLP other;
  ema.copy_to(other);
  for (const auto& p : other.named_parameters()) EXPECT_TRUE(all_close(p.tensor, sd.at(p.name), 0, 0));
  optim::EMA restored(other, 0.9);
  restored.load_state_dict(snapshot(sd));
  for (const auto& [name, t] : restored.state_dict()) EXPECT_TRUE(all_close(t, sd.at(name), 0, 0));
  nn::StateDict bad = snapshot(sd);
  bad.erase("fc1.bias");
  EXPECT_THROW(restored.load_state_dict(bad), Error);

  nn::Linear wrong({3, 5});
  EXPECT_THROW(ema.update(wrong), Error);
  EXPECT_THROW(optim::EMA(m, 1.5), Error);
}

TEST(EMA, WarmupFollowsDiffusersAndSwapExchanges) {
  MLP m;
  optim::EMA ema(m, 0.99);
  std::map<std::string, std::vector<double>> naive;
  for (const auto& p : m.named_parameters()) naive[p.name] = p.tensor.to_vector<double>();
  for (int step = 0; step < 5; ++step) {
    {
      NoGradGuard ng;
      for (const auto& p : m.named_parameters()) Tensor(p.tensor).copy_(randn(p.tensor.shape()));
    }
    ema.update(m, step);
    const double d = std::min(0.99, (1.0 + step) / (10.0 + step));
    for (const auto& p : m.named_parameters()) {
      const std::vector<double> v = p.tensor.to_vector<double>();
      for (size_t i = 0; i < v.size(); ++i) naive[p.name][i] = d * naive[p.name][i] + (1 - d) * v[i];
    }
  }
  const nn::StateDict shadow = snapshot(ema.state_dict());
  for (const auto& [name, values] : naive) EXPECT_TRUE(all_close(shadow.at(name), values, 1e-6, 1e-7)) << name;
  nn::StateDict live;
  for (const auto& p : m.named_parameters()) live[p.name] = p.tensor.clone();
  ema.swap(m);  // the model holds the EMA weights, the EMA the live ones
  for (const auto& p : m.named_parameters()) EXPECT_TRUE(all_close(p.tensor, shadow.at(p.name), 0, 0)) << p.name;
  for (const auto& [name, t] : ema.state_dict()) EXPECT_TRUE(all_close(t, live.at(name), 0, 0)) << name;
  ema.swap(m);  // and back
  for (const auto& p : m.named_parameters()) EXPECT_TRUE(all_close(p.tensor, live.at(p.name), 0, 0)) << p.name;
  for (const auto& [name, t] : ema.state_dict()) EXPECT_TRUE(all_close(t, shadow.at(name), 0, 0)) << name;
}

TEST(GradientAccumulation, TwoHalfBatchesEqualOneBatch) {
  manual_seed(5);
  const Tensor x = randn({8, 3}), y = randn({8, 2});
  MLP whole, halves;
  halves.load_state_dict(snapshot(whole.state_dict()));
  nn::flatten_parameters(halves);  // accumulation into the flat buffer, too
  optim::AdamW opt_whole(whole, {.lr = 0.01}), opt_halves(halves, {.lr = 0.01});
  for (int step = 0; step < 3; ++step) {
    mean(square(whole.forward(x) - y)).backward();
    for (int64_t half = 0; half < 2; ++half) {
      const Tensor xb = x.narrow(0, 4 * half, 4), yb = y.narrow(0, 4 * half, 4);
      (mean(square(halves.forward(xb) - yb)) * 0.5).backward();
    }
    const auto pw = whole.named_parameters(), ph = halves.named_parameters();
    for (size_t i = 0; i < pw.size(); ++i)
      EXPECT_TRUE(all_close(ph[i].tensor.grad(), pw[i].tensor.grad(), 1e-5, 1e-7)) << pw[i].name;
    opt_whole.step();
    opt_halves.step();
    opt_whole.zero_grad();
    opt_halves.zero_grad();
    for (size_t i = 0; i < pw.size(); ++i) EXPECT_TRUE(all_close(ph[i].tensor, pw[i].tensor, 1e-5, 1e-6)) << pw[i].name;
  }
}

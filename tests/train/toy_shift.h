#pragma once
// A toy task kind for the fine-tuning and evaluation-suite tests:
// "toy_shift", an MLP (fc1, fc2, fc3) learning y = sin(data.freq x) from
// Philox-drawn samples; evaluate() gives val_loss on 256 fixed points.
#include <cmath>
#include <tuple>

#include "fm/fm.h"
#include "fm/nn/layers.h"
#include "fm/train/task.h"

namespace toy {

using namespace fm;

class Mlp : public nn::Module {
 public:
  explicit Mlp(int64_t h) {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions{1, h}));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions{h, h}));
    fc3 = register_module("fc3", std::make_shared<nn::Linear>(nn::LinearOptions{h, 1}));
  }
  Tensor forward(const Tensor& x) const { return fc3->forward(tanh(fc2->forward(tanh(fc1->forward(x))))); }
  std::shared_ptr<nn::Linear> fc1, fc2, fc3;
};

// Samples first.. of stream `seed`: x uniform in (-2, 2], y = sin(freq x).
inline std::pair<Tensor, Tensor> samples(uint64_t seed, int64_t first, int64_t n, double freq) {
  std::vector<float> xs, ys;
  for (int64_t i = 0; i < n; ++i) {
    const double x = 4.0 * double(uint_to_unit_float(philox_block({seed, 0}, uint64_t(first + i))[0])) - 2.0;
    xs.push_back(float(x));
    ys.push_back(float(std::sin(freq * x)));
  }
  return {tensor(xs, {n, 1}), tensor(ys, {n, 1})};
}

class ToyShift : public train::Task {
 public:
  explicit ToyShift(const train::Config& c) : cfg_(c) {}
  void build(const train::RunContext&) override {
    manual_seed(uint64_t(cfg_.get_int("train.seed")));
    model_ = std::make_shared<Mlp>(cfg_.get_int("model.hidden"));
    freq_ = cfg_.get_double("data.freq");
    std::tie(val_x_, val_y_) = samples(999, 0, 256, freq_);
  }
  nn::Module& model() override { return *model_; }
  train::StepOutput train_step() override {
    const int64_t B = cfg_.get_int("train.batch_size");
    auto [x, y] = samples(uint64_t(cfg_.get_int("train.seed")), position_, B, freq_);
    position_ += B;
    return {mse_loss(model_->forward(x), y), {}};
  }
  train::StepOutput bench_step() override { return train_step(); }
  std::map<std::string, double> evaluate() override { return {{"val_loss", mse_loss(model_->forward(val_x_), val_y_).item()}}; }
  int64_t batch_samples() const override { return cfg_.get_int("train.batch_size"); }
  double flops_per_sample() const override { return 6.0 * double(model_->num_parameters()); }
  train::TaskState state() const override { return {{{"train", position_}}, {}, {}}; }
  void load_state(const train::TaskState& s) override { position_ = s.positions.at("train"); }
  const Mlp& mlp() const { return *model_; }

 private:
  const train::Config& cfg_;
  std::shared_ptr<Mlp> model_;
  double freq_ = 0;
  int64_t position_ = 0;
  Tensor val_x_, val_y_;
};

inline const train::TaskRegistrar registrar{{
    "toy_shift",
    "test kind: an MLP learning sin(freq x)",
    [](train::Config& c) {
      c.add_int("model.hidden", 24, "hidden units").add_double("data.freq", 1.0, "y = sin(freq x)");
    },
    nullptr,
    {"model.hidden"},
    [](const train::Config& c) { return std::make_unique<ToyShift>(c); },
}};

const char* const kRecipe = R"([task]
kind = toy_shift
[train]
batch_size = 32
max_steps = 300
lr = 0.01
min_lr = 0.001
warmup_steps = 10
weight_decay = 0.0
eval_every = 0
save_every = 0
log_every = 1000
seed = 3
[runtime]
threads = 1
peak_gflops = 10
)";

}  // namespace toy

// An outside program that adds its own model kind to libfm's trainer: a
// Task registered under "sine" (an MLP regressing y = sin(3x)), trained by
// fm::train::Trainer from a recipe this program writes, with checkpoints and
// metrics in a run directory. Exits non-zero unless the validation loss
// falls below 0.02, or if the built-in kinds (libfm::tasks) are missing.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "fm/fm.h"
#include "fm/nn/layers.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace {

struct Sine : fm::nn::Module {
  explicit Sine(int64_t hidden) {
    fc1 = register_module("fc1", std::make_shared<fm::nn::Linear>(fm::nn::LinearOptions{1, hidden, true}));
    fc2 = register_module("fc2", std::make_shared<fm::nn::Linear>(fm::nn::LinearOptions{hidden, 1, true}));
  }
  fm::Tensor forward(const fm::Tensor& x) const { return fc2->forward(fm::tanh(fc1->forward(x))); }
  std::shared_ptr<fm::nn::Linear> fc1, fc2;
};

class SineTask : public fm::train::Task {
 public:
  explicit SineTask(const fm::train::Config& c) : cfg_(c) {}
  void build(const fm::train::RunContext&) override {
    fm::manual_seed(uint64_t(cfg_.get_int("train.seed")));
    model_ = std::make_unique<Sine>(cfg_.get_int("model.hidden"));
  }
  fm::nn::Module& model() override { return *model_; }
  fm::train::StepOutput train_step() override { return {loss(batch(position_++)), {}}; }
  fm::train::StepOutput bench_step() override { return {loss(batch(0)), {}}; }
  std::map<std::string, double> evaluate() override { return {{"val_loss", loss(batch(-1)).item()}}; }
  int64_t batch_samples() const override { return cfg_.get_int("train.batch_size"); }
  double flops_per_sample() const override { return 6.0 * double(model_->num_parameters()); }
  fm::train::TaskState state() const override { return {{{"train", position_}}, {}, {}}; }
  void load_state(const fm::train::TaskState& s) override { position_ = s.positions.at("train"); }

 private:
  // Batch `i`'s inputs from its own stream (-1: the validation batch).
  fm::Tensor batch(int64_t i) const {
    fm::Generator gen(uint64_t(1000 + i));
    return fm::rand({batch_samples(), 1}, {}, &gen) * 2.0 - 1.0;
  }
  fm::Tensor loss(const fm::Tensor& x) const { return fm::mean(fm::square(model_->forward(x) - fm::sin(x * 3.0))); }

  const fm::train::Config& cfg_;
  std::unique_ptr<Sine> model_;
  int64_t position_ = 0;
};

const fm::train::TaskRegistrar registrar{{
    "sine", "an MLP regressing sin(3x)",
    [](fm::train::Config& c) { c.add_int("model.hidden", 32, "hidden units"); },
    nullptr, {"model.hidden"},
    [](const fm::train::Config& c) { return std::make_unique<SineTask>(c); }}};

}  // namespace

int main() {
  try {
    bool has_builtin = false;
    for (const auto& k : fm::train::task_names()) has_builtin |= k == "lm";
    if (!has_builtin) fm::error("the built-in kinds did not register (libfm::tasks not loaded)");
    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "libfm_consumer_sine";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::ofstream((dir / "sine.ini").string()) << "[task]\nkind = sine\n[model]\nhidden = 32\n"
                                                  "[train]\nbatch_size = 128\nmax_steps = 600\nlr = 1e-2\nmin_lr = 1e-3\n"
                                                  "warmup_steps = 20\nweight_decay = 0\neval_every = 300\nlog_every = 300\n"
                                               << "[runtime]\nthreads = 1\npeak_gflops = 1\n[run]\ndir = "
                                               << (dir / "run").string() << "\n";
    fm::train::Trainer trainer(fm::train::load_recipe((dir / "sine.ini").string()), false);
    trainer.run();
    const double val = trainer.task().evaluate().at("val_loss");
    std::printf("custom task: val loss %.4f after %lld steps\n", val, (long long)trainer.step());
    if (!(val < 0.02)) fm::error("the sine task did not learn: val loss ", val);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_task: %s\n", e.what());
    return 1;
  }
}

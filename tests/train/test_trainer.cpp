// The Trainer proven with a toy kind registered here: "toy_regression", a
// 2-layer MLP learning y = sin(freq x) + noise. Its data are drawn per sample
// from Philox keyed by (seed, sample index), so a data position resumes the
// stream exactly and two micro-batches of B are the same samples as one of
// 2B. It keeps, besides the "train" position, a second named position, a
// named random stream ("aug": input jitter) and a tensor ("seen": running
// target sums), so checkpoints must round-trip all three kinds of state.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fm/fm.h"
#include "fm/io/checkpoint.h"
#include "fm/io/safetensors.h"
#include "fm/optim/loss_scaler.h"
#include "fm/nn/layers.h"
#include "fm/train/recipe.h"
#include "fm/train/task.h"
#include "fm/train/trainer.h"
#include "helpers.h"

namespace {

using namespace fm;
namespace fs = std::filesystem;

// ---------------------------------------------------------------- the toy kind

// Samples first .. first+n-1 of the stream `seed`: one Philox block per
// sample (lane 0: x in (-2, 2], lanes 1-2: Box-Muller noise).
struct Samples {
  std::vector<float> x, y;
};
Samples draw_samples(uint64_t seed, int64_t first, int64_t n, double freq, double noise) {
  Samples s;
  const PhiloxState stream{seed, 0};
  for (int64_t i = 0; i < n; ++i) {
    const auto b = philox_block(stream, uint64_t(first + i));
    const double x = 4.0 * double(uint_to_unit_float(b[0])) - 2.0;
    const double u1 = uint_to_unit_float(b[1]), u2 = uint_to_unit_float(b[2]);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
    s.x.push_back(float(x));
    s.y.push_back(float(std::sin(freq * x) + noise * z));
  }
  return s;
}

class ToyMLP : public nn::Module {
 public:
  ToyMLP(int64_t hidden, double dropout) {
    fc1 = register_module("fc1", std::make_shared<nn::Linear>(nn::LinearOptions{1, hidden}));
    drop = register_module("drop", std::make_shared<nn::Dropout>(dropout));
    fc2 = register_module("fc2", std::make_shared<nn::Linear>(nn::LinearOptions{hidden, 1}));
  }
  Tensor forward(const Tensor& x) const { return fc2->forward(drop->forward(tanh(fc1->forward(x)))); }
  std::shared_ptr<nn::Linear> fc1, fc2;
  std::shared_ptr<nn::Dropout> drop;
};

void declare_toy_keys(train::Config& c) {
  c.add_int("model.hidden", 32, "hidden units")
      .add_double("model.dropout", 0.0, "dropout after the hidden layer (draws from the default generator)")
      .add_double("data.freq", 1.5, "y = sin(freq x) + noise")
      .add_double("data.noise", 0.05, "standard deviation of the target noise")
      .add_double("data.jitter", 0.02, "input jitter drawn from the task's own 'aug' stream")
      .add_int("data.val_size", 256, "held-out samples (noise-free targets)")
      .add_int("data.signal_at", 0, "micro-batch number (from 1) during which the process gets SIGTERM (0: none)")
      .add_int("data.nan_at", 0, "micro-batch number (from 1) whose targets are NaN (0: none)")
      .add_double("model.loss_weight", 1.0, "the loss is multiplied by this (tiny: f16 gradients underflow)");
}

class ToyRegression : public train::Task {
 public:
  explicit ToyRegression(const train::Config& c) : cfg_(c) {}

  void build(const train::RunContext& ctx) override {
    B_ = cfg_.get_int("train.batch_size");
    seed_ = uint64_t(cfg_.get_int("train.seed"));
    freq_ = cfg_.get_double("data.freq");
    noise_ = cfg_.get_double("data.noise");
    jitter_ = cfg_.get_double("data.jitter");
    nan_at_ = cfg_.get_int("data.nan_at");
    signal_at_ = cfg_.get_int("data.signal_at");
    loss_weight_ = cfg_.get_double("model.loss_weight");
    manual_seed(seed_);  // initialisation and dropout draw from the default generator
    model_ = std::make_shared<ToyMLP>(cfg_.get_int("model.hidden"), cfg_.get_double("model.dropout"));
    aug_ = Generator(seed_ * 31 + 17);
    seen_ = zeros({2}, DType::f64);
    if (!ctx.open_data) {
      Generator g(seed_ + 99);
      bench_x_ = rand({B_, 1}, {}, &g);
      bench_y_ = rand({B_, 1}, {}, &g);
      return;
    }
    const int64_t n = cfg_.get_int("data.val_size");
    const Samples v = draw_samples(seed_ + 1000003, 0, n, freq_, 0.0);
    val_x_ = tensor(v.x, {n, 1});
    val_y_ = tensor(v.y, {n, 1});
  }

  nn::Module& model() override { return *model_; }

  train::StepOutput train_step() override {
    Samples s = draw_samples(seed_, position_, B_, freq_, noise_);
    position_ += B_;
    ++micro_batches_;
    const PhiloxState a = aug_.reserve(uint64_t(B_));  // one block per sample: splits like the data
    for (int64_t i = 0; i < B_; ++i)
      s.x[size_t(i)] += float(jitter_ * (double(uint_to_unit_float(philox_block(a, uint64_t(i))[0])) - 0.5));
    std::vector<double> seen = seen_.to_vector<double>();
    for (float y : s.y) seen[0] += y;
    seen[1] += double(B_);
    seen_ = tensor(seen);
    if (micro_batches_ == nan_at_) s.y.assign(s.y.size(), NAN);  // a poisoned batch
    if (micro_batches_ == signal_at_) std::raise(SIGTERM);       // as a scheduler's preemption notice
    Tensor loss = mse_loss(model_->forward(tensor(s.x, {B_, 1})), tensor(s.y, {B_, 1}));
    if (loss_weight_ != 1.0) loss = loss * loss_weight_;
    return {loss, {{"target_mean_seen", seen[0] / seen[1]}}};
  }

  train::StepOutput bench_step() override { return {mse_loss(model_->forward(bench_x_), bench_y_), {}}; }

  std::map<std::string, double> evaluate() override {
    return {{"val_loss", mse_loss(model_->forward(val_x_), val_y_).item()}};
  }

  void write_samples(int64_t step, train::SampleSink& sink) override {
    const std::vector<float> xs{-1.5f, 0.0f, 1.5f};
    const std::vector<float> pred = model_->forward(tensor(xs, {3, 1})).to_vector<float>();
    std::string text = "step " + std::to_string(step) + "\n";
    for (size_t i = 0; i < xs.size(); ++i)
      text += "x " + std::to_string(xs[i]) + " pred " + std::to_string(pred[i]) + " target " +
              std::to_string(std::sin(freq_ * xs[i])) + "\n";
    sink.text("sample", text);
  }

  int64_t batch_samples() const override { return B_; }
  double flops_per_sample() const override { return 6.0 * double(model_->num_parameters()); }

  train::TaskState state() const override {
    train::TaskState s;
    s.positions = {{"train", position_}, {"micro_batches", micro_batches_}};
    s.rngs["aug"] = aug_.state();
    s.tensors["seen"] = seen_;
    return s;
  }
  void load_state(const train::TaskState& s) override {
    position_ = s.positions.at("train");
    micro_batches_ = s.positions.at("micro_batches");
    aug_.set_state(s.rngs.at("aug"));
    seen_ = s.tensors.at("seen").clone();
  }

 private:
  const train::Config& cfg_;
  int64_t B_ = 0, position_ = 0, micro_batches_ = 0, nan_at_ = 0, signal_at_ = 0;
  uint64_t seed_ = 0;
  double freq_ = 0, noise_ = 0, jitter_ = 0, loss_weight_ = 1;
  std::shared_ptr<ToyMLP> model_;
  Generator aug_;
  Tensor seen_, val_x_, val_y_, bench_x_, bench_y_;
};

const train::TaskRegistrar toy_registrar{{
    "toy_regression",
    "test kind: an MLP learning sin(freq x)",
    declare_toy_keys,
    nullptr,
    {"model.hidden"},
    [](const train::Config& c) { return std::make_unique<ToyRegression>(c); },
}};

// A second kind, only so that recipes can name another kind's keys.
const train::TaskRegistrar other_registrar{{
    "toy_other",
    "test kind: never built",
    [](train::Config& c) { c.add_int("model.hidden_dim", 8, "width").add_int("data.classes", 3, "classes"); },
    nullptr,
    {"model.hidden_dim"},
    [](const train::Config& c) -> std::unique_ptr<train::Task> { return std::make_unique<ToyRegression>(c); },
}};

// The toy keeping its tensor under a name that starts with "ema." (see
// TaskTensorsNamedEmaSurviveResume): task tensors and EMA weights keep apart.
class ToyEmaNamedState : public ToyRegression {
 public:
  using ToyRegression::ToyRegression;
  train::TaskState state() const override {
    train::TaskState s = ToyRegression::state();
    s.tensors["ema.seen"] = s.tensors.at("seen");
    s.tensors.erase("seen");
    return s;
  }
  void load_state(const train::TaskState& s) override {
    auto it = s.tensors.find("ema.seen");
    if (it == s.tensors.end()) error("toy_ema_named: the resumed task state lacks its tensor 'ema.seen'");
    train::TaskState t = s;
    t.tensors["seen"] = it->second;
    ToyRegression::load_state(t);
  }
};

const train::TaskRegistrar ema_named_registrar{{
    "toy_ema_named",
    "test kind: toy_regression with a task tensor named ema.seen",
    declare_toy_keys,
    nullptr,
    {"model.hidden"},
    [](const train::Config& c) { return std::make_unique<ToyEmaNamedState>(c); },
}};

// ---------------------------------------------------------------- helpers

using Record = std::map<std::string, double>;  // one metrics.jsonl line; null values as NaN

std::vector<Record> read_metrics(const std::string& run_dir) {
  std::vector<Record> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    Record r;
    for (const auto& [k, v] : j.items()) r[k] = v.is_null() ? NAN : v.get<double>();
    out.push_back(r);
  }
  return out;
}

// The records without their timing figures (these differ run to run).
std::vector<Record> without_timing(std::vector<Record> records) {
  for (auto& r : records) r.erase("samples_per_s");
  return records;
}

std::string describe(const Record& r) {
  std::string s;
  for (const auto& [k, v] : r) s += k + "=" + std::to_string(v) + " ";
  return s;
}

// The same keys at every step and bit-identical values (NaN where the other has NaN).
void expect_same_records(const std::vector<Record>& expected, const std::vector<Record>& actual) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    bool same = expected[i].size() == actual[i].size();
    for (const auto& [k, v] : expected[i]) {
      auto it = actual[i].find(k);
      same = same && it != actual[i].end() && (v == it->second || (std::isnan(v) && std::isnan(it->second)));
    }
    EXPECT_TRUE(same) << "line " << i + 1 << ":\n  " << describe(expected[i]) << "\nvs\n  " << describe(actual[i]);
  }
}

// Byte-for-byte equality of every tensor of two safetensors files.
::testing::AssertionResult same_tensors(const std::string& a_path, const std::string& b_path,
                                        const std::vector<std::string>& skip_prefixes = {}) {
  const io::Safetensors a = io::load_safetensors(a_path), b = io::load_safetensors(b_path);
  if (a.tensors.size() != b.tensors.size())
    return ::testing::AssertionFailure() << a_path << " holds " << a.tensors.size() << " tensors, " << b_path
                                         << " holds " << b.tensors.size();
  for (const auto& [name, ta] : a.tensors) {
    auto it = b.tensors.find(name);
    if (it == b.tensors.end()) return ::testing::AssertionFailure() << name << " missing from " << b_path;
    const Tensor& tb = it->second;
    if (ta.dtype() != tb.dtype() || ta.shape() != tb.shape())
      return ::testing::AssertionFailure() << name << ": dtype or shape differ";
    const Tensor ca = ta.contiguous(), cb = tb.contiguous();
    if (std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) != 0)
      return ::testing::AssertionFailure() << name << " differs:\n" << ca << "\nvs\n" << cb;
  }
  return ::testing::AssertionSuccess();
}

// Every file under `dir` (relative path -> content).
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? fm::test::read_file(e.path().string()) : "<dir>";
  return out;
}

const char* kRecipe = R"(# toy recipe for the trainer tests
[task]
kind = toy_regression

[model]
hidden = 32

[data]
noise = 0.05

[train]
batch_size = 16
max_steps = 20
lr = 0.02
min_lr = 0.002
warmup_steps = 3
schedule = cosine
weight_decay = 0.01
grad_clip = 1.0
eval_every = 10
save_every = 10
log_every = 5
seed = 7

[runtime]
threads = 1
peak_gflops = 10
)";

class TrainerTest : public fm::test::TempDirTest {
 protected:
  TrainerTest() : TempDirTest("fm_trainer_") {}
  void SetUp() override {
    TempDirTest::SetUp();
    fm::test::write_file(path("recipe.ini"), kRecipe);
  }
  // The toy recipe for run directory `run` (under the test's temp dir), with overrides.
  train::Config config(const std::string& run, std::vector<std::string> overrides = {}) {
    overrides.push_back("--run.dir=" + path(run));
    return train::load_recipe(path("recipe.ini"), overrides);
  }
  std::string ckpt(const std::string& run, int64_t step) {
    return path(run) + "/checkpoints/step_" + std::to_string(step);
  }
  void expect_exact_resume(bool ema);
  void train_run(const std::string& run, const std::vector<std::string>& overrides = {}, bool resume = false) {
    train::Trainer t(config(run, overrides), resume);
    t.run();
  }
};

// ---------------------------------------------------------------- 1. learning

TEST_F(TrainerTest, LearnsTheFunction) {
  const std::vector<std::string> o{"--train.max_steps=150", "--train.eval_every=1", "--train.save_every=0",
                                   "--train.sample_every=1000", "--train.log_every=1000"};
  train_run("run", o);
  const auto m = read_metrics(path("run"));
  ASSERT_EQ(m.size(), 150u);
  const double first = m.front().at("val_loss"), last = m.back().at("val_loss");
  // The val targets are sin(1.5 x) on (-2, 2]: a constant predictor scores
  // about their variance (~0.45); a learning MLP gets far below.
  EXPECT_GT(first, 0.2) << "the initial model should not already fit";
  EXPECT_LT(last, 0.02) << "val_loss " << first << " -> " << last;
  EXPECT_LT(last, first / 20);
  EXPECT_LT(m.back().at("train_loss"), 0.03);  // noise floor is 0.05^2
  EXPECT_TRUE(fs::is_empty(path("run") + "/samples"));  // sample_every = 1000: not at evaluations
}

// ---------------------------------------------------------------- 2. resume

// A run of 20 steps equals one stopped after 10 and resumed: every metrics
// line (timing aside) and every tensor of the final checkpoint (weights,
// optimizer moments, default and named RNG states, positions, task tensors,
// EMA weights) bit-identical.
// (Not a TEST_P: TempDirTest names its folder after the test, and a
// parameterised test's name holds a '/'.)
void TrainerTest::expect_exact_resume(bool ema) {
  std::vector<std::string> o{"--model.dropout=0.2", "--train.eval_every=5"};
  if (ema) o.push_back("--train.ema_decay=0.9");
  train_run("full", o);

  auto first = o;
  first.push_back("--run.stop_after=10");
  train_run("split", first);
  EXPECT_TRUE(fs::exists(ckpt("split", 10)));
  EXPECT_FALSE(fs::exists(ckpt("split", 20)));
  EXPECT_EQ(read_metrics(path("split")).size(), 10u);
  // The resumed task sees the saved named state before training on. (The
  // scratch model draws from the default generator: made before the
  // trainer restores it.)
  const io::TrainState saved = [&] {
    ToyMLP scratch(32, 0.0);
    return io::load_checkpoint(ckpt("split", 10), scratch);
  }();
  {
    train::Trainer t(config("split", o), true);
    EXPECT_EQ(t.step(), 10);
    const train::TaskState now = t.task().state();
    EXPECT_EQ(now.positions.at("train"), 10 * 16);
    EXPECT_EQ(now.positions.at("train"), saved.data_position);
    EXPECT_EQ(now.positions.at("micro_batches"), 10);
    EXPECT_EQ(now.rngs.at("aug").seed, saved.rngs.at("aug").seed);
    EXPECT_EQ(now.rngs.at("aug").offset, saved.rngs.at("aug").offset);
    EXPECT_EQ(now.rngs.at("aug").offset, uint64_t(10 * 16));
    EXPECT_TRUE(fm::test::all_close(now.tensors.at("seen"), saved.tensors.at("task.seen"), 0, 0));
    EXPECT_EQ(saved.tensors.count("ema.fc1.weight"), ema ? 1u : 0u);
    t.run();
  }

  const auto full = without_timing(read_metrics(path("full")));
  const auto split = without_timing(read_metrics(path("split")));
  ASSERT_EQ(full.size(), 20u);
  expect_same_records(full, split);
  EXPECT_TRUE(same_tensors(ckpt("full", 20) + "/model.safetensors", ckpt("split", 20) + "/model.safetensors"));
  EXPECT_TRUE(
      same_tensors(ckpt("full", 20) + "/train_state.safetensors", ckpt("split", 20) + "/train_state.safetensors"));
  // Those states mattered: dropout drew from the default generator after the
  // resume point, and the EMA weights are not the live ones.
  const io::Safetensors s10 = io::load_safetensors(ckpt("split", 10) + "/train_state.safetensors");
  const io::Safetensors s20 = io::load_safetensors(ckpt("split", 20) + "/train_state.safetensors");
  EXPECT_GT(s20.tensors.at("rng").to_vector<int64_t>()[1], s10.tensors.at("rng").to_vector<int64_t>()[1]);
  if (ema) {
    const io::Safetensors w20 = io::load_safetensors(ckpt("split", 20) + "/model.safetensors");
    EXPECT_GT(fm::test::rel_err(s20.tensors.at("state.ema.fc1.weight"), w20.tensors.at("fc1.weight")), 1e-4);
  }
}

TEST_F(TrainerTest, ResumedRunEqualsAnUninterruptedOne) { expect_exact_resume(false); }
TEST_F(TrainerTest, ResumedRunWithEmaEqualsAnUninterruptedOne) { expect_exact_resume(true); }

// A run stopped after step 15 whose step-15 checkpoint is then found broken
// resumes from step 10 (skipping it): metrics lines 11-15 are dropped and
// written again, and the end is the uninterrupted run's.
TEST_F(TrainerTest, KilledRunResumesFromItsLastCheckpoint) {
  const std::vector<std::string> o{"--model.dropout=0.2", "--train.ema_decay=0.8"};
  train_run("full", o);
  auto first = o;
  first.push_back("--run.stop_after=15");
  train_run("killed", first);
  // As if the disk lost the newest checkpoint: it is skipped, not trusted.
  const std::string broken = ckpt("killed", 15) + "/model.safetensors";
  fs::resize_file(broken, fs::file_size(broken) / 2);
  ASSERT_EQ(read_metrics(path("killed")).size(), 15u);
  {
    train::Trainer t(config("killed", o), true);
    EXPECT_EQ(t.step(), 10);
    t.run();
  }
  const auto full = without_timing(read_metrics(path("full")));
  const auto killed = without_timing(read_metrics(path("killed")));
  ASSERT_EQ(full.size(), 20u);
  expect_same_records(full, killed);
  EXPECT_TRUE(same_tensors(ckpt("full", 20) + "/model.safetensors", ckpt("killed", 20) + "/model.safetensors"));
  EXPECT_TRUE(
      same_tensors(ckpt("full", 20) + "/train_state.safetensors", ckpt("killed", 20) + "/train_state.safetensors"));
}

// A task tensor named like an EMA weight ("ema.seen") comes back to the task.
TEST_F(TrainerTest, TaskTensorsNamedEmaSurviveResume) {
  const std::vector<std::string> o{"--task.kind=toy_ema_named", "--train.max_steps=4", "--train.warmup_steps=1"};
  auto first = o;
  first.push_back("--run.stop_after=2");
  train_run("run", first);
  EXPECT_EQ(fm::test::error_of([&] { train_run("run", o, true); }), "");
}

// ---------------------------------------------------------------- 3. accumulation

TEST_F(TrainerTest, GradAccumulationEqualsTheDoubledBatch) {
  const std::vector<std::string> common{"--train.max_steps=10", "--train.save_every=0", "--train.eval_every=0"};
  auto a = common, b = common;
  a.insert(a.end(), {"--train.batch_size=8", "--train.grad_accum=2"});
  b.insert(b.end(), {"--train.batch_size=16", "--train.grad_accum=1"});
  train_run("accum", a);
  train_run("batch", b);
  const auto ma = read_metrics(path("accum")), mb = read_metrics(path("batch"));
  ASSERT_EQ(ma.size(), 10u);
  ASSERT_EQ(mb.size(), 10u);
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_NEAR(ma[i].at("train_loss"), mb[i].at("train_loss"), 1e-6 + 1e-5 * mb[i].at("train_loss")) << i + 1;
    EXPECT_NEAR(ma[i].at("grad_norm"), mb[i].at("grad_norm"), 1e-6 + 1e-4 * mb[i].at("grad_norm")) << i + 1;
    EXPECT_EQ(ma[i].at("lr"), mb[i].at("lr"));
  }
  EXPECT_NEAR(ma.back().at("val_loss"), mb.back().at("val_loss"), 1e-5 * mb.back().at("val_loss") + 1e-7);
  const io::Safetensors wa = io::load_safetensors(ckpt("accum", 10) + "/model.safetensors");
  const io::Safetensors wb = io::load_safetensors(ckpt("batch", 10) + "/model.safetensors");
  ASSERT_EQ(wa.tensors.size(), wb.tensors.size());
  for (const auto& [name, t] : wb.tensors) {
    EXPECT_TRUE(fm::test::all_close(wa.tensors.at(name), t, 1e-4, 1e-5)) << name;
  }
  // The same data were seen: both tasks are at sample 160.
  const io::Safetensors sa = io::load_safetensors(ckpt("accum", 10) + "/train_state.safetensors");
  EXPECT_EQ(sa.tensors.at("data_position").item<int64_t>(), 160);
  EXPECT_EQ(sa.tensors.at("data_position.micro_batches").item<int64_t>(), 20);
}

// ---------------------------------------------------------------- 4. clipping

TEST_F(TrainerTest, ClippingLogsThePreClipNormAndBoundsTheUpdate) {
  // Constant lr from step 1 and no weight decay: the first update is AdamW's
  // lr * g / (|g| + eps) alone.
  const std::vector<std::string> common{"--train.max_steps=1", "--train.warmup_steps=0", "--train.schedule=constant",
                                        "--train.weight_decay=0", "--train.lr=0.01"};
  auto loose = common, tight = common;
  loose.push_back("--train.grad_clip=1e6");  // logs the norm, never clips
  tight.push_back("--train.grad_clip=1e-10");
  train_run("loose", loose);
  train_run("tight", tight);
  const double norm_loose = read_metrics(path("loose")).at(0).at("grad_norm");
  const double norm_tight = read_metrics(path("tight")).at(0).at("grad_norm");
  EXPECT_GT(norm_loose, 1e-3);
  EXPECT_EQ(norm_tight, norm_loose) << "grad_norm must be the norm before clipping";

  // The initial weights, rebuilt exactly as the task builds them.
  ToyMLP init(32, 0.0);
  {
    train::Config c = config("scratch", common);
    auto task = train::find_task("toy_regression").make(c);
    train::RunContext ctx;
    ctx.config = &c;
    task->build(ctx);
    init.load_state_dict(task->model().state_dict());
    // The first micro-batch's gradient norm, computed here: the logged figure.
    task->train_step().loss.backward();
    double sq = 0;
    for (const Tensor& p : task->model().parameters()) sq += sum(square(p.grad())).to(DType::f64).item();
    EXPECT_NEAR(norm_loose, std::sqrt(sq), 1e-5 * norm_loose);
  }
  const io::Safetensors wl = io::load_safetensors(ckpt("loose", 1) + "/model.safetensors");
  const io::Safetensors wt = io::load_safetensors(ckpt("tight", 1) + "/model.safetensors");
  double sq_loose = 0, sq_tight = 0, max_loose = 0;
  for (const auto& [name, w0] : init.state_dict()) {
    const std::vector<double> a = w0.to_vector<double>(), l = wl.tensors.at(name).to_vector<double>(),
                              t = wt.tensors.at(name).to_vector<double>();
    for (size_t i = 0; i < a.size(); ++i) {
      sq_loose += (l[i] - a[i]) * (l[i] - a[i]);
      sq_tight += (t[i] - a[i]) * (t[i] - a[i]);
      max_loose = std::max(max_loose, std::fabs(l[i] - a[i]));
    }
  }
  const double lr = 0.01, eps = 1e-8, clip = 1e-10;
  // Unclipped, AdamW's first step moves each weight by about lr.
  EXPECT_GT(max_loose, 0.5 * lr);
  // Clipped to norm 1e-10, |update| <= lr * |g| / eps elementwise, so the
  // whole update's norm is at most lr * clip / eps (1e-4 here).
  EXPECT_LE(std::sqrt(sq_tight), 1.01 * lr * clip / eps);
  EXPECT_GT(std::sqrt(sq_tight), 0.0);
  EXPECT_LT(std::sqrt(sq_tight), 0.05 * std::sqrt(sq_loose));
}

// ---------------------------------------------------------------- 5. numerics guards

// A NaN loss at step 6: train.nonfinite = stop names the step and keeps the
// step-5 checkpoint; skip leaves the weights of step 5 as they were, counts
// the skip, and goes on learning.
TEST_F(TrainerTest, NonFiniteLossStopsOrIsSkippedAsTheRecipeSays) {
  const std::vector<std::string> o{"--data.nan_at=6", "--train.save_every=1", "--train.max_steps=12"};
  const std::string err = fm::test::error_of([&] { train_run("stop", o); });
  EXPECT_NE(err.find("training diverged at step 6: loss is nan"), std::string::npos) << err;
  EXPECT_TRUE(fs::exists(ckpt("stop", 5)));
  EXPECT_FALSE(fs::exists(ckpt("stop", 6)));

  auto skip = o;
  skip.push_back("--train.nonfinite=skip");
  train_run("skip", skip);
  const auto m = read_metrics(path("skip"));
  ASSERT_EQ(m.size(), 12u);
  EXPECT_FALSE(m[4].count("skipped_steps"));
  EXPECT_TRUE(std::isnan(m[5].at("train_loss")));
  for (size_t i = 5; i < m.size(); ++i) EXPECT_EQ(m[i].at("skipped_steps"), 1.0) << i + 1;
  EXPECT_TRUE(std::isfinite(m.back().at("val_loss")));
  EXPECT_LT(m.back().at("train_loss"), m.front().at("train_loss"));
  // The skipped step changed neither the weights nor the optimizer's moments.
  EXPECT_TRUE(same_tensors(ckpt("skip", 5) + "/model.safetensors", ckpt("skip", 6) + "/model.safetensors"));
  const io::Safetensors s5 = io::load_safetensors(ckpt("skip", 5) + "/train_state.safetensors");
  const io::Safetensors s6 = io::load_safetensors(ckpt("skip", 6) + "/train_state.safetensors");
  for (const auto& [name, t] : s5.tensors)
    if (name.rfind("optimizer.", 0) == 0) EXPECT_TRUE(fm::test::all_close(t, s6.tensors.at(name), 0, 0)) << name;
}

// f16 with a loss of ~1e-9: without scaling its gradients fall below f16's
// smallest subnormal (6e-8) and vanish (Autocast.F16GradientsUnderflow...);
// the dynamic scaler keeps them, so the f16 run's gradient norms follow the
// f32 run's. With a loss of ~1 the first steps overflow at the initial
// scale 65536 and are skipped while it backs off, then training goes on.
TEST_F(TrainerTest, F16LossScalerKeepsTinyGradientsAndSkipsOverflows) {
  const std::vector<std::string> o{"--model.loss_weight=1e-9", "--train.max_steps=8", "--train.grad_clip=1e9",
                                   "--train.save_every=0", "--train.eval_every=0"};
  auto f16 = o;
  f16.push_back("--runtime.precision=f16");
  train_run("f32", o);
  train_run("f16", f16);
  const auto a = read_metrics(path("f32")), b = read_metrics(path("f16"));
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_EQ(b[i].at("loss_scale"), 65536.0);
    EXPECT_GT(a[i].at("grad_norm"), 1e-12);
    EXPECT_NEAR(b[i].at("grad_norm"), a[i].at("grad_norm"), 0.05 * a[i].at("grad_norm")) << "step " << i + 1;
  }
  EXPECT_FALSE(b.back().count("skipped_steps"));

  auto big = f16;
  big.push_back("--model.loss_weight=3");
  train_run("big", big);
  const auto c = read_metrics(path("big"));
  ASSERT_EQ(c.size(), 8u);
  size_t k = 0;  // the overflowing steps: each halves the scale
  while (k < c.size() && std::isnan(c[k].at("grad_norm"))) {
    EXPECT_EQ(c[k].at("loss_scale"), 65536.0 / double(1 << k)) << "step " << k + 1;
    EXPECT_EQ(c[k].at("skipped_steps"), double(k + 1));
    ++k;
  }
  EXPECT_GE(k, 1u) << "a loss of ~1 at scale 65536 should overflow f16";
  ASSERT_LT(k, 6u);
  for (size_t i = k; i < c.size(); ++i) {
    EXPECT_TRUE(std::isfinite(c[i].at("grad_norm"))) << "step " << i + 1;
    EXPECT_EQ(c[i].at("loss_scale"), 65536.0 / double(1 << k));
  }
  EXPECT_LT(c.back().at("train_loss"), c[k].at("train_loss"));
  // The scaler's state is in the checkpoint, for resume.
  const io::Safetensors st = io::load_safetensors(ckpt("big", 8) + "/train_state.safetensors");
  EXPECT_EQ(st.tensors.at("state.scaler.scale").item<double>(), c.back().at("loss_scale"));
}

// SIGTERM during step 7: the step finishes, a checkpoint is saved at 7, the
// run returns naming the signal, and resuming ends where an uninterrupted
// run does.
TEST_F(TrainerTest, SigtermFinishesTheStepSavesAndResumesExactly) {
  const std::vector<std::string> o{"--model.dropout=0.2", "--train.save_every=5"};
  train_run("full", o);
  {
    auto first = o;
    first.push_back("--data.signal_at=7");
    train::Trainer t(config("stopped", first), false);
    t.run();
    EXPECT_EQ(t.stopped_by(), SIGTERM);
    EXPECT_EQ(t.step(), 7);
  }
  EXPECT_TRUE(fs::exists(ckpt("stopped", 7)));
  EXPECT_EQ(read_metrics(path("stopped")).size(), 7u);
  {
    train::Trainer t(config("stopped", o), true);
    EXPECT_EQ(t.step(), 7);
    t.run();
    EXPECT_EQ(t.stopped_by(), 0);
  }
  expect_same_records(without_timing(read_metrics(path("full"))), without_timing(read_metrics(path("stopped"))));
  EXPECT_TRUE(same_tensors(ckpt("full", 20) + "/model.safetensors", ckpt("stopped", 20) + "/model.safetensors"));
}

TEST(LossScaler, BacksOffOnOverflowAndGrowsAfterTheInterval) {
  optim::LossScalerOptions o;
  o.interval = 3;
  optim::LossScaler s(o);
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(true);
  EXPECT_EQ(s.scale(), 32768.0);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 32768.0);
  s.update(false);  // the third good step in a row
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(false);
  s.update(true);  // an overflow resets the count
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 32768.0);
  optim::LossScaler t(o);
  t.load_state_dict(s.state_dict());
  EXPECT_EQ(t.scale(), s.scale());
  EXPECT_EQ(t.good_steps(), 2);
  t.update(false);
  EXPECT_EQ(t.scale(), 65536.0);
  const std::string err = fm::test::error_of([&] { t.load_state_dict({{"scale", scalar_tensor(-1.0, DType::f64)}}); });
  EXPECT_NE(err.find("good_steps"), std::string::npos) << err;
}

// ---------------------------------------------------------------- 6. registry and recipes

TEST_F(TrainerTest, RegistryAndRecipes) {
  const std::string unknown = fm::test::error_of([] { train::find_task("no_such_kind"); });
  EXPECT_NE(unknown.find("unknown kind 'no_such_kind'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("toy_regression"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("toy_other"), std::string::npos) << unknown;
  const auto names = train::task_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "toy_regression"), names.end());
  fm::test::expect_error(
      [] {
        train::register_task({"toy_regression", "", declare_toy_keys, nullptr, {},
                              [](const train::Config& c) { return std::make_unique<ToyRegression>(c); }});
      },
      "registered twice");

  // The kind's own keys are accepted.
  fm::test::write_file(path("ok.ini"), "[task]\nkind = toy_regression\n[model]\nhidden = 8\n[data]\nnoise = 0.25\n");
  const train::Config ok = train::load_recipe(path("ok.ini"), {"--data.freq=2.5"});
  EXPECT_EQ(ok.get_string("task.kind"), "toy_regression");
  EXPECT_EQ(ok.get_int("model.hidden"), 8);
  EXPECT_DOUBLE_EQ(ok.get_double("data.noise"), 0.25);
  EXPECT_DOUBLE_EQ(ok.get_double("data.freq"), 2.5);
  EXPECT_EQ(ok.get_int("train.batch_size"), 8);  // a trainer key's default

  // Another kind's key is refused, naming the nearest key of this kind.
  fm::test::write_file(path("other_key.ini"), "[task]\nkind = toy_regression\n[model]\nhidden_dim = 8\n");
  const std::string msg = fm::test::error_of([&] { train::load_recipe(path("other_key.ini")); });
  EXPECT_NE(msg.find("unknown key 'model.hidden_dim' (did you mean 'model.hidden'?)"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path("other_key.ini")), std::string::npos) << msg;
  fm::test::expect_error([&] { train::load_recipe(path("ok.ini"), {"--model.hiden=3"}); },
                         "did you mean 'model.hidden'?");

  // recipe_kind reads [task] kind; --task.kind wins; no [task]: lm.
  EXPECT_EQ(train::recipe_kind(path("other_key.ini")), "toy_regression");
  EXPECT_EQ(train::recipe_kind(path("other_key.ini"), {"--task.kind=toy_other"}), "toy_other");
  EXPECT_EQ(train::recipe_kind(path("other_key.ini"), {"--task.kind", "toy_other"}), "toy_other");
  fm::test::write_file(path("plain.ini"), "[model]\nn_layer = 2\n");
  EXPECT_EQ(train::recipe_kind(path("plain.ini")), "lm");
  // Under the overriding kind, that kind's key is the valid one.
  const train::Config other = train::load_recipe(path("other_key.ini"), {"--task.kind=toy_other"});
  EXPECT_EQ(other.get_string("task.kind"), "toy_other");
  EXPECT_EQ(other.get_int("model.hidden_dim"), 8);
  EXPECT_FALSE(other.has("model.hidden"));
  fm::test::expect_error([&] { train::load_recipe(path("ok.ini"), {"--task.kind=toy_other"}); },
                         "unknown key 'model.hidden'");
}

TEST_F(TrainerTest, RunDirectoryOfAnotherShapeRefusesToResume) {
  const std::vector<std::string> o{"--train.max_steps=4", "--run.stop_after=2", "--train.eval_every=0"};
  train_run("run", o);
  const auto before = snapshot(path("run"));
  auto other = o;
  other.push_back("--model.hidden=16");
  const std::string msg = fm::test::error_of([&] { train::Trainer t(config("run", other), true); });
  EXPECT_NE(msg.find("model.hidden = 32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("gives 16"), std::string::npos) << msg;
  fm::test::expect_error([&] { train::check_same_shape(config("run", other), path("run")); }, "model.hidden");
  train::check_same_shape(config("run", o), path("run"));  // the same shape passes
  // Another kind in the same directory is refused too.
  fm::test::write_file(path("other.ini"), "[task]\nkind = toy_other\n[run]\ndir = " + path("run") + "\n");
  fm::test::expect_error([&] { train::check_same_shape(train::load_recipe(path("other.ini")), path("run")); },
                         "holds a 'toy_regression' run");
  fm::test::expect_error([&] { train::Trainer t(train::load_recipe(path("other.ini")), true); },
                         "holds a 'toy_regression' run");
  EXPECT_EQ(snapshot(path("run")), before);
  // Non-shape keys may change on resume.
  train::Trainer t(config("run", {"--train.max_steps=4", "--train.lr=0.005"}), true);
  EXPECT_EQ(t.step(), 2);
  t.run();
  EXPECT_EQ(read_metrics(path("run")).size(), 4u);
}

TEST_F(TrainerTest, SecondRunInTheSameDirectoryIsRefused) {
  // resume on an empty directory starts fresh.
  {
    train::Trainer t(config("run", {"--train.max_steps=3", "--train.warmup_steps=1"}), true);
    EXPECT_EQ(t.step(), 0);
    t.run();
  }
  auto before = snapshot(path("run"));
  ASSERT_TRUE(before.count("config.ini"));
  const std::string msg = fm::test::error_of([&] { train::Trainer t(config("run", {"--train.max_steps=3", "--train.warmup_steps=1"}), false);
  });
  EXPECT_NE(msg.find("already holds a run"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path("run")), std::string::npos) << msg;
  EXPECT_EQ(snapshot(path("run")), before);
  // Resuming the finished run trains nothing and keeps its logs and checkpoints.
  {
    train::Trainer t(config("run", {"--train.max_steps=3", "--train.warmup_steps=1"}), true);
    EXPECT_EQ(t.step(), 3);
    t.run();
  }
  auto after = snapshot(path("run"));
  for (auto* snap : {&after, &before})  // each invocation opens its own TensorBoard file
    std::erase_if(*snap, [](const auto& kv) { return kv.first.rfind("events.out.tfevents.", 0) == 0; });
  EXPECT_EQ(after, before);
}

// ---------------------------------------------------------------- 7. logs, bench, eval

TEST_F(TrainerTest, LogsSamplesAndCheckpointsFollowTheSchedules) {
  train_run("run", {"--train.max_steps=20", "--train.eval_every=5", "--train.save_every=8", "--train.log_every=4"});
  const std::string run = path("run");
  const auto m = read_metrics(run);
  ASSERT_EQ(m.size(), 20u);
  const train::Config c = config("run", {"--train.max_steps=20"});
  const optim::LRSchedule schedule = train::lr_schedule(c);
  for (int64_t step = 1; step <= 20; ++step) {
    const Record& r = m[size_t(step - 1)];
    EXPECT_EQ(r.at("step"), double(step));
    EXPECT_TRUE(std::isfinite(r.at("train_loss"))) << describe(r);
    EXPECT_DOUBLE_EQ(r.at("lr"), schedule.at(step - 1)) << step;
    EXPECT_TRUE(r.count("grad_norm")) << describe(r);
    EXPECT_TRUE(r.count("target_mean_seen")) << describe(r);  // the task's own metric
    EXPECT_EQ(r.count("val_loss"), step % 5 == 0 ? 1u : 0u) << describe(r);
    EXPECT_EQ(r.count("samples_per_s"), step % 4 == 0 ? 1u : 0u) << describe(r);
    const bool sample = step % 5 == 0;
    EXPECT_EQ(fs::exists(run + "/samples/step_" + std::to_string(step) + ".txt"), sample) << step;
    const bool saved = step % 8 == 0 || step == 20;
    EXPECT_EQ(fs::exists(ckpt("run", step)), saved) << step;
  }
  for (const auto& r : m)
    if (r.count("samples_per_s")) EXPECT_GT(r.at("samples_per_s"), 0);
  const std::string sample = fm::test::read_file(run + "/samples/step_20.txt");
  EXPECT_NE(sample.find("step 20\n"), std::string::npos) << sample;
  EXPECT_NE(sample.find("pred"), std::string::npos) << sample;
  EXPECT_TRUE(fs::exists(run + "/config.ini"));
  EXPECT_NE(fm::test::read_file(run + "/config.ini").find("hidden = 32"), std::string::npos);
  bool events = false;
  for (const auto& e : fs::directory_iterator(run))
    events |= e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  EXPECT_TRUE(events);
  // Each checkpoint's train state knows its step and data position.
  const io::Safetensors s8 = io::load_safetensors(ckpt("run", 8) + "/train_state.safetensors");
  EXPECT_EQ(s8.tensors.at("step").item<int64_t>(), 8);
  EXPECT_EQ(s8.tensors.at("data_position").item<int64_t>(), 8 * 16);
}

TEST_F(TrainerTest, BenchTrainReturnsFiniteFigures) {
  const train::BenchResult r = train::bench_train(config("bench"), 3);
  EXPECT_TRUE(std::isfinite(r.step_s) && r.step_s > 0);
  EXPECT_TRUE(std::isfinite(r.samples_per_s) && r.samples_per_s > 0);
  EXPECT_TRUE(std::isfinite(r.gflops) && r.gflops > 0);
  EXPECT_EQ(r.tokens_per_s, 0);
  EXPECT_EQ(r.params, 3 * 32 + 1);
  EXPECT_EQ(r.unit, "samples");
  EXPECT_FALSE(fs::exists(path("bench")));  // a benchmark makes no run directory
}

TEST_F(TrainerTest, EvaluateRunMatchesTheLastEvaluation) {
  train_run("run", {"--train.max_steps=12", "--train.eval_every=6"});
  const auto m = read_metrics(path("run"));
  ASSERT_EQ(m.size(), 12u);
  const auto figures = train::evaluate_run(path("run"));
  EXPECT_EQ(figures.at("step"), 12);
  EXPECT_DOUBLE_EQ(figures.at("val_loss"), m.back().at("val_loss"));
}

TEST_F(TrainerTest, EvaluateRunUsesTheEmaWeights) {
  // With EMA, the trainer's evaluations and fm eval both use the EMA weights.
  train_run("run", {"--train.max_steps=12", "--train.eval_every=6", "--train.ema_decay=0.9"});
  const auto m = read_metrics(path("run"));
  const double logged = m.back().at("val_loss");
  const auto figures = train::evaluate_run(path("run"));
  EXPECT_EQ(figures.at("step"), 12);
  EXPECT_DOUBLE_EQ(figures.at("val_loss"), logged);

  // The EMA weights' figure, computed here from the checkpoint's state.ema.*.
  train::Config c = train::load_run_config(path("run"));
  auto task = train::find_task("toy_regression").make(c);
  train::RunContext ctx;
  ctx.config = &c;
  task->build(ctx);
  const io::Safetensors st = io::load_safetensors(ckpt("run", 12) + "/train_state.safetensors");
  nn::StateDict ema;
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("state.ema.", 0) == 0) ema[name.substr(10)] = t;
  ASSERT_EQ(ema.size(), 4u);
  task->model().load_state_dict(ema);
  NoGradGuard ng;
  task->model().eval();
  EXPECT_NEAR(figures.at("val_loss"), task->evaluate().at("val_loss"), 1e-6 * logged);
  // The live weights (model.safetensors) give another figure: the swap back
  // after evaluation restored them, and the checkpoint saved them.
  {
    ToyMLP& model = static_cast<ToyMLP&>(task->model());
    model.load_state_dict([&] {
      nn::StateDict w;
      for (const auto& [name, t] : io::load_safetensors(ckpt("run", 12) + "/model.safetensors").tensors) w[name] = t;
      return w;
    }());
  }
  EXPECT_GT(std::fabs(task->evaluate().at("val_loss") - logged), 1e-4 * logged) << "EMA and live weights should differ";
}

}  // namespace

// Training checkpoints (fm/io/checkpoint.h): round trips of weights, optimizer
// state, step, RNG, data position, config and metadata; a resumed run that
// reproduces the uninterrupted one bit for bit; errors for mismatched models
// and broken files; and a trainer SIGKILLed at random moments that always
// leaves a loadable newest checkpoint and resumes to the same numbers.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "fm/io/checkpoint.h"
#include "fm/nn/gpt.h"
#include "fm/optim/optim.h"
#include "helpers.h"

using namespace fm;
using namespace fm::io;
namespace fs = std::filesystem;
using Bytes = std::string;

namespace {

constexpr int64_t kVocab = 8, kBatch = 4, kSeqLen = 8;
constexpr uint64_t kInitSeed = 3, kDropoutSeed = 7;

nn::GPTOptions tiny_gpt(int64_t d_model = 16, int64_t n_layer = 2) {
  return {.vocab_size = kVocab, .block_size = kSeqLen, .n_layer = n_layer, .n_head = 2, .d_model = d_model,
          .dropout = 0.1};
}

nn::GPT make_gpt(const nn::GPTOptions& o, uint64_t init_seed) {
  Generator g(init_seed);
  return nn::GPT(o, &g);
}

// A tensor's bytes, so comparisons are bit exact.
Bytes raw(const Tensor& t) {
  Tensor c = t.contiguous();
  return Bytes(static_cast<const char*>(c.data_ptr()), c.nbytes());
}

using Snapshot = std::map<std::string, Bytes>;

Snapshot snapshot(const TensorMap& tensors) {
  Snapshot out;
  for (const auto& [name, t] : tensors) out[name] = raw(t);
  return out;
}

// Equal names and bits; a failure lists the tensors that differ.
::testing::AssertionResult same_bits(const Snapshot& actual, const Snapshot& expected) {
  std::string differ;
  for (const auto& [name, bytes] : expected) {
    auto it = actual.find(name);
    if (it == actual.end()) differ += " " + name + " (missing)";
    else if (it->second != bytes) differ += " " + name;
  }
  for (const auto& [name, bytes] : actual)
    if (!expected.count(name)) differ += " " + name + " (unexpected)";
  if (differ.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "tensors differ:" << differ;
}

// A GPT with dropout (which draws from the default generator), AdamW and a
// cosine schedule, trained on random tokens. Batch i is a pure function of
// i, so the data position alone says where the data resumes.
struct TinyRun {
  explicit TinyRun(uint64_t init_seed = kInitSeed, nn::GPTOptions o = tiny_gpt())
      : model(make_gpt(o, init_seed)), opt(model, {.lr = 3e-3, .weight_decay = 0.1}) {
    // The dropout stream of a fresh run. Seeded after the model is built:
    // layer constructors draw their default init from the default generator.
    manual_seed(kDropoutSeed);
  }

  double train_step() {
    opt.set_lr(schedule.at(step));
    Generator data(1000 + uint64_t(data_position++));
    const Tensor ids = randint(0, kVocab, {kBatch, kSeqLen + 1}, DType::i64, &data);
    const Tensor logits = model.forward(ids.slice(1, 0, kSeqLen));
    const Tensor loss = cross_entropy(logits.reshape({-1, kVocab}), ids.slice(1, 1, kSeqLen + 1).reshape({-1}));
    loss.backward();
    opt.step();
    opt.zero_grad();
    ++step;
    return loss.item();
  }

  TrainState state(Metadata extra = {}) const {
    return {step, default_generator().state(), data_position, "[train]\nlr = 3e-3\n", opt.state_dict(),
            std::move(extra)};
  }

  // Everything a fresh process needs to continue: weights, optimizer, RNG, data.
  void resume_from(const std::string& step_dir) {
    const TrainState s = load_checkpoint(step_dir, model);
    opt.load_state_dict(s.optimizer);
    default_generator().set_state(s.rng);
    step = s.step;
    data_position = s.data_position;
  }

  nn::GPT model;
  optim::AdamW opt;
  optim::LRSchedule schedule{.kind = "cosine", .lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 3, .max_steps = 1000};
  int64_t step = 0;
  int64_t data_position = 0;
};

class Checkpoint : public fm::test::TempDirTest {
 protected:
  Checkpoint() : TempDirTest("fm_checkpoint_") {}
  std::string root() const { return dir_.string(); }
  std::string step_dir(int64_t step) const { return (dir_ / ("step_" + std::to_string(step))).string(); }
  std::vector<std::string> names_in(const fs::path& dir) const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

// Calls f, which must throw fm::Error holding each of `parts`.
template <class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// ------------------------------------------------------------------ round trips

TEST_F(Checkpoint, RoundTripsEveryPartOfTheState) {
  TinyRun a;
  for (int i = 0; i < 3; ++i) a.train_step();
  TrainState saved = a.state({{"schedule", "cosine"}, {"note", "ünï ✓"}});
  saved.rng = {0xfedcba9876543210ull, (1ull << 60) + 5};  // both halves beyond int64 and double precision
  saved.data_position = (int64_t(1) << 53) + 1;
  const std::string path = save_checkpoint(root(), a.model, saved);
  EXPECT_EQ(path, step_dir(3));
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"step_3"});  // no temp directory left
  EXPECT_EQ(names_in(path), (std::vector<std::string>{"model.safetensors", "train_state.safetensors"}));

  TinyRun b(kInitSeed + 1);  // other weights, a fresh optimizer
  const TrainState loaded = load_checkpoint(path, b.model);
  EXPECT_TRUE(same_bits(snapshot(b.model.state_dict()), snapshot(a.model.state_dict())));
  EXPECT_EQ(loaded.step, 3);
  EXPECT_EQ(loaded.rng.seed, saved.rng.seed);
  EXPECT_EQ(loaded.rng.offset, saved.rng.offset);
  EXPECT_EQ(loaded.data_position, saved.data_position);
  EXPECT_EQ(loaded.config, saved.config);
  EXPECT_EQ(loaded.extra, saved.extra);
  EXPECT_TRUE(same_bits(snapshot(loaded.optimizer), snapshot(a.opt.state_dict())));
  b.opt.load_state_dict(loaded.optimizer);
  EXPECT_EQ(b.opt.step_count(), 3);
  EXPECT_TRUE(same_bits(snapshot(b.opt.state_dict()), snapshot(a.opt.state_dict())));
}

TEST_F(Checkpoint, SavingAStepAgainReplacesIt) {
  TinyRun run;
  run.train_step();
  save_checkpoint(root(), run.model, run.state({{"version", "1"}}));
  run.train_step();
  run.step = 1;  // the same step directory, newer contents
  save_checkpoint(root(), run.model, run.state({{"version", "2"}}));
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"step_1"});
  TinyRun fresh(kInitSeed + 1);
  EXPECT_EQ(load_checkpoint(step_dir(1), fresh.model).extra.at("version"), "2");
  EXPECT_TRUE(same_bits(snapshot(fresh.model.state_dict()), snapshot(run.model.state_dict())));
}

TEST_F(Checkpoint, LatestIsTheHighestStepNotTheNewestFile) {
  EXPECT_EQ(latest_checkpoint((dir_ / "missing").string()), "");
  EXPECT_EQ(latest_checkpoint(root()), "");
  TinyRun run;
  for (int64_t s : {10, 2, 9}) {
    run.step = s;
    save_checkpoint(root(), run.model, run.state());
  }
  fs::create_directory(dir_ / "step_x");
  fs::create_directory(dir_ / ".step_11.tmp.1.0");  // a killed writer's leftover
  std::ofstream(dir_ / "step_12") << "a file, not a directory";
  std::vector<std::string> skipped;
  EXPECT_EQ(latest_checkpoint(root(), &skipped), step_dir(10));
  EXPECT_TRUE(skipped.empty());
}

// ------------------------------------------------------------------ resume

TEST_F(Checkpoint, ResumedRunReproducesTheUninterruptedLosses) {
  constexpr int kSteps = 4;
  std::vector<double> uninterrupted;
  {
    TinyRun run;
    for (int i = 0; i < kSteps; ++i) run.train_step();
    save_checkpoint(root(), run.model, run.state());
    const uint64_t offset_before = default_generator().state().offset;
    for (int i = 0; i < kSteps; ++i) uninterrupted.push_back(run.train_step());
    EXPECT_GT(default_generator().state().offset, offset_before) << "dropout drew nothing: the RNG is not tested";
  }
  // A fresh start: other initial weights, a fresh optimizer, another RNG stream.
  TinyRun resumed(kInitSeed + 100);
  manual_seed(kDropoutSeed + 100);
  ASSERT_EQ(latest_checkpoint(root()), step_dir(kSteps));
  resumed.resume_from(step_dir(kSteps));
  std::vector<double> losses;
  for (int i = 0; i < kSteps; ++i) losses.push_back(resumed.train_step());
  EXPECT_EQ(losses, uninterrupted);  // bit for bit
  EXPECT_EQ(resumed.step, 2 * kSteps);

  // Without the RNG state the dropout masks differ: the comparison above can fail.
  TinyRun no_rng(kInitSeed + 100);
  no_rng.resume_from(step_dir(kSteps));
  manual_seed(kDropoutSeed + 100);
  EXPECT_NE(no_rng.train_step(), uninterrupted[0]);
}

// ------------------------------------------------------------------ errors

TEST_F(Checkpoint, AnotherModelShapeIsRejectedAndLeavesTheModelUnchanged) {
  TinyRun run;
  save_checkpoint(root(), run.model, run.state());
  const std::string model_file = step_dir(0) + "/model.safetensors";

  nn::GPT narrow = make_gpt(tiny_gpt(8), 5);
  const auto before = snapshot(narrow.state_dict());
  expect_error([&] { load_checkpoint(step_dir(0), narrow); },
               {"load_checkpoint: " + model_file + ": ", "shape mismatch", "wte.weight (checkpoint [8,16], model [8,8])"});
  EXPECT_TRUE(same_bits(snapshot(narrow.state_dict()), before));

  nn::GPT deeper = make_gpt(tiny_gpt(16, 3), 5);
  const auto deeper_before = snapshot(deeper.state_dict());
  expect_error([&] { load_checkpoint(step_dir(0), deeper); },
               {model_file, "missing: transformer.blocks.2.attn.proj.bias"});
  EXPECT_TRUE(same_bits(snapshot(deeper.state_dict()), deeper_before));
}

TEST_F(Checkpoint, BrokenTrainStatesAreSkippedAndReported) {
  TinyRun run;
  for (int64_t s = 1; s <= 4; ++s) {
    run.step = s;
    save_checkpoint(root(), run.model, run.state());
  }
  const auto state_file = [&](int64_t s) { return step_dir(s) + "/train_state.safetensors"; };
  fs::resize_file(state_file(4), fs::file_size(state_file(4)) / 2);             // truncated
  std::ofstream(state_file(3), std::ios::binary | std::ios::trunc) << Bytes(64, '\xff');  // garbage
  fs::copy_file(state_file(1), state_file(2), fs::copy_options::overwrite_existing);     // another step's

  std::vector<std::string> skipped;
  EXPECT_EQ(latest_checkpoint(root(), &skipped), step_dir(1));
  ASSERT_EQ(skipped.size(), 3u);
  EXPECT_NE(skipped[0].find(state_file(4)), std::string::npos) << skipped[0];
  EXPECT_NE(skipped[1].find(state_file(3)), std::string::npos) << skipped[1];
  EXPECT_NE(skipped[2].find(state_file(2) + ": holds step 1"), std::string::npos) << skipped[2];

  // Loading a broken one directly fails before the model is touched.
  TinyRun fresh(kInitSeed + 1);
  const auto before = snapshot(fresh.model.state_dict());
  expect_error([&] { load_checkpoint(step_dir(4), fresh.model); }, {state_file(4)});
  EXPECT_TRUE(same_bits(snapshot(fresh.model.state_dict()), before));
}

TEST_F(Checkpoint, BrokenModelFilesAreSkippedToo) {
  TinyRun run;
  for (int64_t s = 1; s <= 2; ++s) {
    run.step = s;
    save_checkpoint(root(), run.model, run.state());
  }
  fs::remove(step_dir(2) + "/model.safetensors");
  std::vector<std::string> skipped;
  EXPECT_EQ(latest_checkpoint(root(), &skipped), step_dir(1));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find(step_dir(2) + "/model.safetensors"), std::string::npos) << skipped[0];
}

TEST_F(Checkpoint, RejectsBadSaves) {
  TinyRun run;
  TrainState bad = run.state({{"config", "clobbers the config"}});
  expect_error([&] { save_checkpoint(root(), run.model, bad); }, {"'config' is reserved"});
  bad = run.state();
  bad.step = -1;
  expect_error([&] { save_checkpoint(root(), run.model, bad); }, {"step must be >= 0"});
  bad = run.state();
  bad.optimizer["broken"] = Tensor();  // fails after the model file is written
  expect_error([&] { save_checkpoint(root(), run.model, bad); }, {"tensor 'optim.broken' is undefined"});
  EXPECT_TRUE(names_in(dir_).empty()) << "a failed save left " << names_in(dir_).front();
  std::ofstream(dir_ / "file") << "x";
  expect_error([&] { save_checkpoint((dir_ / "file" / "ckpts").string(), run.model, run.state()); },
               {"save_checkpoint: ", (dir_ / "file").string()});
  EXPECT_EQ(names_in(dir_), std::vector<std::string>{"file"});
}

// ------------------------------------------------------------------ SIGKILL

// The child of the kill test: resumes from the newest checkpoint (or starts
// fresh) and saves every step, each with its loss, until killed.
[[noreturn]] void train_until_killed(const std::string& root) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  try {
    // One thread: OpenMP's pool does not survive fork, and the parent's
    // reference run must use the same reduction order.
    set_num_threads(1);
    TinyRun run;
    if (const std::string latest = latest_checkpoint(root); !latest.empty()) run.resume_from(latest);
    for (;;) {
      const double loss = run.train_step();
      save_checkpoint(root, run.model, run.state({{"loss_bits", std::to_string(std::bit_cast<uint64_t>(loss))}}));
    }
  } catch (...) {
    ::_exit(1);
  }
}

TEST_F(Checkpoint, KilledTrainerAlwaysLeavesALoadableLatestAndResumesExactly) {
  const uint64_t seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  constexpr int kRounds = 15;
  int64_t newest = 0;
  for (int round = 0; round < kRounds; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) train_until_killed(root());
    std::this_thread::sleep_for(std::chrono::microseconds(20'000 + rng() % 80'000));
    // A loaded machine may need longer for the first save; without one the test proves nothing.
    for (int wait = 0; newest == 0 && latest_checkpoint(root()).empty() && wait < 1000; ++wait)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child ended by itself: " << status;

    // Every visible name is a complete step_N; unfinished work hides behind a '.'.
    for (const std::string& name : names_in(dir_)) {
      if (name[0] == '.') continue;
      ASSERT_EQ(name.rfind("step_", 0), 0u) << name;
      EXPECT_EQ(names_in(dir_ / name), (std::vector<std::string>{"model.safetensors", "train_state.safetensors"}))
          << name;
    }
    std::vector<std::string> skipped;
    const std::string latest = latest_checkpoint(root(), &skipped);
    EXPECT_TRUE(skipped.empty()) << skipped.front();
    if (latest.empty()) continue;  // killed before its first save
    TinyRun probe;
    const TrainState s = load_checkpoint(latest, probe.model);
    EXPECT_EQ(latest, step_dir(s.step));
    probe.opt.load_state_dict(s.optimizer);
    EXPECT_GE(s.step, newest) << "a checkpoint went missing";
    newest = s.step;
  }
  ASSERT_GT(newest, 0) << "no child finished a save: the test proved nothing";

  // The uninterrupted run, on one thread as the children: every surviving
  // checkpoint holds its loss, and the newest its weights, bit for bit.
  const int threads = get_num_threads();
  set_num_threads(1);
  TinyRun probe, reference;
  int64_t checked = 0;
  while (reference.step < newest) {
    const double loss = reference.train_step();
    const std::string dir = step_dir(reference.step);
    if (!fs::exists(dir)) continue;
    const TrainState s = load_checkpoint(dir, probe.model);
    EXPECT_EQ(std::stoull(s.extra.at("loss_bits")), std::bit_cast<uint64_t>(loss)) << dir;
    if (reference.step == newest) {
      EXPECT_TRUE(same_bits(snapshot(probe.model.state_dict()), snapshot(reference.model.state_dict())));
    }
    ++checked;
  }
  set_num_threads(threads);
  int64_t temp_dirs = 0;
  for (const std::string& name : names_in(dir_)) temp_dirs += name[0] == '.';
  std::cout << kRounds << " kills; " << newest << " steps; " << checked << " checkpoints checked; " << temp_dirs
            << " unfinished saves left hidden\n";
}

}  // namespace

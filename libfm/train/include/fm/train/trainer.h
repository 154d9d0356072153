#pragma once
// fm::train::Trainer: the one training loop every model kind runs
// (DESIGN.md). It builds the recipe's Task, moves its model to
// runtime.device and packs its parameters flat, and owns what is the same
// for every kind: the AdamW optimizer and LR schedule, gradient
// accumulation, clipping, autocast (runtime.precision), EMA weights,
// evaluation and sample schedules, checkpoints and exact resume, the
// progress line (tokens/s or samples/s, MFU), metrics.jsonl and TensorBoard.
#include <map>
#include <memory>
#include <string>

#include "fm/train/config.h"
#include "fm/train/task.h"

namespace fm::train {

class Trainer {
 public:
  // config: a loaded recipe (load_recipe). resume: continue run.dir from
  // its newest valid checkpoint (a run.dir without one starts fresh).
  // A run.dir that already holds a run is refused unless resuming.
  Trainer(Config config, bool resume);
  ~Trainer();
  // Trains to train.max_steps (or run.stop_after steps), checkpointing as
  // the recipe says and always at the end.
  // SIGTERM or SIGINT (run.handle_signals) ends it early: the step in
  // progress finishes, a checkpoint is saved, and stopped_by() names the signal.
  void run();
  int stopped_by() const;  // SIGTERM, SIGINT, or 0 when run() ran to its end
  Task& task();
  int64_t step() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What `fm bench train` prints: the median of `steps` timed training steps
// (forward, backward, optimizer) on synthetic data of the recipe's shapes.
struct BenchResult {
  double step_s = 0, samples_per_s = 0, tokens_per_s = 0, gflops = 0, params = 0;
  std::string unit;
};
BenchResult bench_train(Config config, int64_t steps);

// Loads run_dir's newest valid checkpoint into `model`, then its EMA weights
// over the parameters when the run kept them; returns the checkpoint's step.
// Errors name the run when it has no checkpoint.
int64_t load_run_weights(const std::string& run_dir, nn::Module& model);

// `fm eval`: loads run_dir's newest checkpoint (its EMA weights when it has
// them) into the run's task and returns task.evaluate().
std::map<std::string, double> evaluate_run(const std::string& run_dir, const std::vector<std::string>& overrides = {});

}  // namespace fm::train

#pragma once
// fm::train::Task: what differs between model kinds (DESIGN.md, "Tasks: one
// loop, many models"). The Trainer owns the loop, the optimizer, precision,
// clipping, accumulation, checkpoints and logs; a Task builds its model and
// data from its config keys, turns the next batch into a loss, evaluates,
// and makes samples for the logs. Kinds register themselves by name
// (`[task] kind = lm`), so a new model kind is a new file.
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fm/dist/communicator.h"
#include "fm/io/safetensors.h"
#include "fm/nn/module.h"
#include "fm/random.h"
#include "fm/train/config.h"

namespace fm::io {
class EventWriter;
}

namespace fm::train {

// What a task's build() gets from the trainer.
struct RunContext {
  const Config* config = nullptr;
  Device device = Device::cpu();     // runtime.device
  std::optional<DType> precision;    // runtime.precision: the autocast dtype, none for f32
  bool open_data = true;             // false for `fm bench train`: synthetic batches only
  // Data parallelism: this process is rank `rank` of `world_size`; training
  // data is sharded so the world's batches are one rank's with world_size x
  // train.batch_size (fm/dist/data_parallel.h).
  int rank = 0, world_size = 1;
  dist::Communicator* comm = nullptr;  // the world's (set by the Trainer; null outside it)
};

// One micro-batch's loss and the scalars to log beside it.
struct StepOutput {
  Tensor loss;                              // 0-dim; the trainer calls backward() on it
  std::map<std::string, double> metrics;    // averaged over micro-batches into the logs
};

// Resumable state a task keeps besides its weights: data positions and
// random streams, by name, and any tensors (saved in the train state).
// "train" in positions is the training data's position.
struct TaskState {
  std::map<std::string, int64_t> positions;
  std::map<std::string, PhiloxState> rngs;
  io::TensorMap tensors;
};

// Where samples for the logs go: the run's samples/ folder and TensorBoard.
class SampleSink {
 public:
  SampleSink(std::string samples_dir, io::EventWriter* events, int64_t step);
  void text(const std::string& tag, const std::string& text);
  // `png` is an encoded PNG of height x width.
  void image_png(const std::string& tag, const std::string& png, int height, int width);
  // `wav` is a whole WAV file of `frames` samples per channel.
  void audio_wav(const std::string& tag, const std::string& wav, double sample_rate, int channels, int64_t frames);

 private:
  std::string dir_;
  io::EventWriter* events_;
  int64_t step_;
};

class Task {
 public:
  virtual ~Task() = default;
  // Builds the model (initialised on the CPU from train.seed, then moved to
  // ctx.device) and opens the data. Called once, first.
  virtual void build(const RunContext& ctx) = 0;
  virtual nn::Module& model() = 0;
  // Draws the next training micro-batch and returns its loss. The trainer
  // has set train mode and autocast around the call.
  virtual StepOutput train_step() = 0;
  // A step on synthetic data of the training shapes (fm bench train);
  // build() had open_data = false.
  virtual StepOutput bench_step() = 0;
  // Held-out figures (val_loss, accuracy, ...); called in eval mode under no_grad.
  virtual std::map<std::string, double> evaluate() = 0;
  // Samples for the logs (text, images); eval mode, no_grad.
  virtual void write_samples(int64_t step, SampleSink& sink) {}

  // Throughput: samples per micro-batch, and tokens per sample when the
  // progress line should count tokens (0: it counts samples, as `unit`).
  virtual int64_t batch_samples() const = 0;
  virtual int64_t tokens_per_sample() const { return 0; }
  virtual std::string sample_unit() const { return "samples"; }
  // Forward + backward FLOPs per sample, for MFU (0: no MFU shown).
  virtual double flops_per_sample() const = 0;

  virtual TaskState state() const { return {}; }
  virtual void load_state(const TaskState& s) {}
};

// A registered model kind.
struct TaskKind {
  std::string name;
  std::string description;
  // Declares the kind's own keys (model.*, data.*, kind-specific train.*).
  std::function<void(Config&)> declare_keys;
  // Fills keys derived from others after parsing (e.g. a vocabulary size
  // taken from the tokenizer); may be empty.
  std::function<void(Config&)> resolve;
  // Keys that fix the model's shape: a run made with other values cannot be
  // resumed or loaded with this config.
  std::vector<std::string> shape_keys;
  std::function<std::unique_ptr<Task>(const Config&)> make;
};

void register_task(TaskKind kind);  // a second kind of the same name is an error
const TaskKind& find_task(const std::string& name);  // error lists the known kinds
std::vector<std::string> task_names();

// Registers a kind at load time: `static fm::train::TaskRegistrar reg{{...}};`
struct TaskRegistrar {
  explicit TaskRegistrar(TaskKind kind) { register_task(std::move(kind)); }
};

}  // namespace fm::train

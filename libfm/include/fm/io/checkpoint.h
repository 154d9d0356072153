#pragma once
// Training checkpoints (DESIGN.md): a directory `step_N/` holding
//   model.safetensors        the model's state dict, by parameter name
//   train_state.safetensors  optimizer state ("optim.<name>"), step, RNG
//                            state, data position; the config text and any
//                            extra strings in the metadata
// A checkpoint is written into a temporary directory that is renamed into
// place only when complete, so a process killed at any instant leaves every
// earlier checkpoint loadable and never a half-written step_N.
#include <map>
#include <string>
#include <vector>

#include "fm/io/safetensors.h"
#include "fm/nn/module.h"
#include "fm/random.h"

namespace fm::io {

struct TrainState {
  int64_t step = 0;
  PhiloxState rng;             // the generator's state, so the stream continues
  int64_t data_position = 0;   // where the training data reader resumes
  std::string config;          // the resolved config text of the run
  TensorMap optimizer;         // Optimizer::state_dict()
  Metadata extra;              // other strings (e.g. schedule name); not "format" or "config"
  // Further named streams a run keeps (other readers' positions, random
  // generators besides the default one) and tensors (EMA weights, ...),
  // saved as "data_position.<name>", "rng.<name>" and "state.<name>".
  std::map<std::string, int64_t> positions;
  std::map<std::string, PhiloxState> rngs;
  TensorMap tensors;
};

// Writes `checkpoints_dir/step_<state.step>/`. Replaces an existing one of
// the same step atomically. Temporary directories start with '.'; a killed
// writer may leave one behind. Errors are fm::Error.
std::string save_checkpoint(const std::string& checkpoints_dir, const nn::Module& model, const TrainState& state);
// The same for a fine-tuning run: `trainable` is the part of the model it
// trains (a LoRA run: the adapters). model.safetensors says so in its
// metadata ("weights": "trainable"), and load_checkpoint then loads it over
// a model that already holds the rest (the run's base).
std::string save_checkpoint(const std::string& checkpoints_dir, const nn::StateDict& trainable, const TrainState& state);

// Loads a step directory: the model's weights (strict; for a fine-tuning
// checkpoint, every saved tensor must be one of the model's) and the train state.
// Errors name the file and the tensor at fault; the model is unchanged then.
// A NaN or infinity in a weight, optimizer state or saved tensor is an error
// (load_safetensors itself does not judge values).
TrainState load_checkpoint(const std::string& step_dir, nn::Module& model);

// The newest `step_N` under checkpoints_dir whose files both validate (and
// whose train state holds step N), or "" when there is none. Broken ones are
// skipped, each reported in `skipped` as a message naming its file.
std::string latest_checkpoint(const std::string& checkpoints_dir, std::vector<std::string>* skipped = nullptr);

}  // namespace fm::io

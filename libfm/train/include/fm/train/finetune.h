#pragma once
// Fine-tuning (`fm finetune RECIPE.ini --from RUN`): a run of any kind that
// starts from another run's weights and trains all of them, LoRA adapters,
// the last layer, or the biases. The recipe is an ordinary one of the same
// kind and model shape, with a [finetune] section. A fine-tuning checkpoint
// holds only the trainable parameters (a LoRA run: the adapters); loading
// the run loads its base first (recursively, so a fine-tune of a fine-tune
// works), then the checkpoint.
#include <string>
#include <vector>

#include "fm/nn/layers.h"
#include "fm/train/config.h"

namespace fm::train {

struct FinetunePlan {
  std::string from;    // a run directory, a checkpoint's step_N directory, or a .safetensors file
  std::string method;  // full, lora, probe, bitfit
  nn::LoraOptions lora;
  std::vector<std::string> lora_targets;  // Linear layers that get an adapter (lora)
  std::vector<std::string> train;         // parameters trained besides the method's
  std::vector<std::string> freeze;        // parameters frozen whatever the method says
  bool active() const { return !from.empty(); }
};

void declare_finetune_keys(Config& c);  // finetune.*, part of every recipe
FinetunePlan finetune_plan(const Config& c);  // errors name the key

// Loads `from` into m: a run directory's newest checkpoint (EMA weights where
// kept; a fine-tuning run's base first, its adapters merged), a step
// directory, or a safetensors file of the model's parameter names.
void load_base_weights(const std::string& from, nn::Module& m);

struct FinetuneSummary {
  int64_t trainable = 0, total = 0;   // parameter counts after the plan
  std::vector<std::string> adapted;   // layers given a LoRA adapter
  std::vector<std::string> trained;   // trainable parameter names
};
// Adds the adapters and freezes what the method does not train. Call after
// load_base_weights and before the parameters are flattened.
FinetuneSummary apply_finetune(nn::Module& m, const FinetunePlan& plan, Generator* gen);

// The weights a fine-tuning checkpoint keeps: the trainable parameters.
nn::StateDict trainable_state(const nn::Module& m);

// Comma- or space-separated patterns ("qkv, proj" -> {"qkv", "proj"}).
std::vector<std::string> split_patterns(const std::string& text);

}  // namespace fm::train

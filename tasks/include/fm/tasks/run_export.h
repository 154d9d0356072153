#pragma once
// Runs out of libfm and in from elsewhere: `fm export` and `fm import`.
#include <cstdint>
#include <string>

namespace fm::tasks {

// A short description of a parameter from its name, for an export's
// config.json: "transformer.blocks.3.attn.qkv.weight" -> "block 3,
// self-attention, q | k | v projection (rows q, then k, then v), weight
// [out, in]". Components it does not know appear as they are.
std::string describe_parameter(const std::string& name);

struct ExportResult {
  int64_t step = 0;     // the checkpoint's
  bool ema = false;     // the weights are the run's EMA weights
  int64_t tensors = 0;  // written to model.safetensors
  bool tokenizer = false;
};

// Writes run_dir's newest weights (its EMA weights where it keeps them) into
// out_dir. Any kind: the task builds its model from the run's config.ini
// (without opening data) and the checkpoint is loaded into it.
//   format "libfm": model.safetensors under libfm's parameter names (what
//     finetune.from reads) and config.json: the kind, step, every config key
//     with its value, and every tensor (name, shape, dtype, description).
//   format "hf" (lm runs): Hugging Face's GPT-2 (see hf_gpt2.h), with
//     vocab.json and merges.txt when the run has a tokenizer.
ExportResult export_run(const std::string& run_dir, const std::string& out_dir, const std::string& format);

// Makes run_dir an lm run of the GPT-2 in hf_dir: config.ini (the model keys
// from config.json; data.tokenizer = run_dir/tokenizer.tok when hf_dir has
// vocab.json and merges.txt) and checkpoints/step_0, so that fm generate,
// fm eval (with --data.val) and finetune.from work on it. run_dir must not
// hold a run yet.
void import_hf_gpt2_run(const std::string& hf_dir, const std::string& run_dir);

}  // namespace fm::tasks

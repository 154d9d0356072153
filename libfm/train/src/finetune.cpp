#include "fm/train/finetune.h"

#include <filesystem>

#include "fm/error.h"
#include "fm/io/checkpoint.h"
#include "fm/io/safetensors.h"
#include "fm/nn/lora.h"
#include "fm/strings.h"
#include "fm/train/trainer.h"

namespace fm::train {
namespace fs = std::filesystem;

void declare_finetune_keys(Config& c) {
  c.add_string("finetune.from", "", "start from this run directory, step_N directory or .safetensors file (fm finetune --from)")
      .add_string("finetune.method", "full", "full (every parameter), lora (low-rank adapters), probe (finetune.train only, e.g. the last layer) or bitfit (biases)")
      .add_int("finetune.lora_rank", 8, "LoRA rank r")
      .add_double("finetune.lora_alpha", 16, "LoRA alpha: the update is scaled by alpha / r")
      .add_double("finetune.lora_dropout", 0.0, "dropout on the adapters' input")
      .add_bool("finetune.lora_rslora", false, "scale by alpha / sqrt(r) (rank-stabilised LoRA)")
      .add_string("finetune.lora_targets", "qkv, proj, fc", "Linear layers given adapters: name patterns, a bare name matching the last component")
      .add_string("finetune.train", "", "parameter name patterns trained besides the method's (probe: the layer to train)")
      .add_string("finetune.freeze", "", "parameter name patterns frozen whatever the method");
}

std::vector<std::string> split_patterns(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char ch : text + ",") {
    if (ch == ',' || ch == ' ' || ch == '\t') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += ch;
    }
  }
  return out;
}

FinetunePlan finetune_plan(const Config& c) {
  FinetunePlan p;
  p.from = c.get_string("finetune.from");
  p.method = c.get_string("finetune.method");
  if (p.method != "full" && p.method != "lora" && p.method != "probe" && p.method != "bitfit")
    error("config: key 'finetune.method' must be full, lora, probe or bitfit, got '", p.method, "'");
  p.lora.rank = c.get_int("finetune.lora_rank");
  p.lora.alpha = c.get_double("finetune.lora_alpha");
  p.lora.dropout = c.get_double("finetune.lora_dropout");
  p.lora.rslora = c.get_bool("finetune.lora_rslora");
  if (p.lora.rank < 1) error("config: key 'finetune.lora_rank' must be >= 1, got ", p.lora.rank);
  p.lora_targets = split_patterns(c.get_string("finetune.lora_targets"));
  p.train = split_patterns(c.get_string("finetune.train"));
  p.freeze = split_patterns(c.get_string("finetune.freeze"));
  if (p.method == "lora" && p.lora_targets.empty()) error("config: key 'finetune.lora_targets' is empty for method lora");
  if (p.method == "probe" && p.train.empty())
    error("config: key 'finetune.train' must name the layer a probe trains (e.g. 'lm_head', 'visual_proj')");
  return p;
}

void load_base_weights(const std::string& from, nn::Module& m) {
  const fs::path path(from);
  if (fs::is_directory(path / "checkpoints")) {
    load_run_weights(from, m);
    return;
  }
  if (fs::is_regular_file(path / "train_state.safetensors")) {
    io::load_checkpoint(from, m);  // strict: a fine-tuning checkpoint alone is not a whole model
    return;
  }
  if (fs::is_regular_file(path)) {
    const io::Safetensors st = io::load_safetensors(from);
    try {
      m.load_state_dict(nn::StateDict(st.tensors.begin(), st.tensors.end()), false);
    } catch (const Error& e) {
      error("finetune.from: ", from, ": ", e.what());
    }
    // Parameters must all be there; buffers may be missing (exports keep parameters only).
    for (const auto& p : m.named_parameters())
      if (!st.tensors.count(p.name)) error("finetune.from: ", from, " has no tensor '", p.name, "'");
    return;
  }
  error("finetune.from: ", from, " is not a run directory, a checkpoint step directory or a safetensors file");
}

FinetuneSummary apply_finetune(nn::Module& m, const FinetunePlan& plan, Generator* gen) {
  FinetuneSummary s;
  if (plan.method == "lora") s.adapted = nn::add_lora(m, plan.lora_targets, plan.lora, gen);
  bool any_train_match = plan.train.empty();
  for (const nn::NamedTensor& p : m.named_parameters()) {
    const std::string& n = p.name;
    const bool extra = nn::matches_any(plan.train, n);
    any_train_match |= extra;
    bool on = plan.method == "full" || extra;
    if (plan.method == "lora") on |= ends_with(n, ".lora_A") || ends_with(n, ".lora_B");
    if (plan.method == "bitfit") on |= n == "bias" || ends_with(n, ".bias");
    if (nn::matches_any(plan.freeze, n)) on = false;
    Tensor(p.tensor).requires_grad_(on);
    s.total += p.tensor.numel();
    if (on) {
      s.trainable += p.tensor.numel();
      s.trained.push_back(n);
    }
  }
  if (!any_train_match) error("config: key 'finetune.train': no parameter matches '", join(plan.train), "'");
  if (s.trained.empty()) error("finetune: the plan leaves no parameter to train (method ", plan.method, ")");
  return s;
}

nn::StateDict trainable_state(const nn::Module& m) {
  nn::StateDict out;
  for (const nn::NamedTensor& p : m.named_parameters())
    if (p.tensor.requires_grad()) out[p.name] = p.tensor;
  return out;
}

}  // namespace fm::train

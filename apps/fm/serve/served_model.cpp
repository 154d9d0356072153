#include "served_model.h"

#include <filesystem>

#include "fm/error.h"
#include "fm/io/checkpoint.h"
#include "fm/tasks/lm.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app::serve {
namespace fs = std::filesystem;

ServedModel::ServedModel(const std::string& run_dir) {
  const train::Config config = train::load_run_config(run_dir);
  kind_ = config.get_string("task.kind");
  name_ = fs::path(run_dir).lexically_normal().filename().string();
  if (name_.empty() || name_ == ".") name_ = fs::absolute(run_dir).lexically_normal().parent_path().filename().string();
  const std::string ckpt = io::latest_checkpoint((fs::path(run_dir) / "checkpoints").string());
  if (ckpt.empty()) error("serve: ", run_dir, " has no valid checkpoint yet");
  const std::string step_dir = fs::path(ckpt).filename().string();
  if (step_dir.rfind("step_", 0) == 0) step_ = std::stoll(step_dir.substr(5));
  if (kind_ != "lm") {
    load_media(run_dir);
    return;
  }
  const std::string tok = config.get_string("data.tokenizer");
  if (tok.empty()) error("serve: ", run_dir, "'s config names no data.tokenizer");
  tokenizer_ = std::make_unique<text::BpeTokenizer>(text::BpeTokenizer::load(tok));
  // Completions end at the end of a document, as OpenAI's do.
  const auto& special = tokenizer_->special_tokens();
  if (const auto it = special.find("<|endoftext|>"); it != special.end()) end_of_text_ = it->second;
  gpt_ = std::make_unique<nn::GPT>(tasks::gpt_options(config));
  step_ = train::load_run_weights(run_dir, *gpt_);  // EMA weights where kept; a fine-tuning run's base + adapters
  gpt_->eval();
}

ServedModel::~ServedModel() = default;

const text::BpeTokenizer& ServedModel::tokenizer() const {
  if (!tokenizer_) error("serve: a '", kind_, "' run has no text tokenizer");
  return *tokenizer_;
}

std::vector<int32_t> ServedModel::complete(const std::vector<int32_t>& prompt, const tasks::SamplingOptions& o,
                                          uint64_t seed) {
  Generator gen(seed);
  return gpt_ ? tasks::sample(*gpt_, prompt, o, gen) : complete_mixed(prompt, o, gen);
}

}  // namespace fm::app::serve

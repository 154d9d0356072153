#pragma once
// A text training run: its directory, config, model, optimizer and data,
// set up fresh or resumed from the newest valid checkpoint.
#include <memory>
#include <optional>
#include <string>

#include "fm/data/token_windows.h"
#include "fm/nn/gpt.h"
#include "fm/optim/adamw.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::app {

struct TextRun {
  train::Config config;
  std::string dir;
  std::optional<text::BpeTokenizer> tokenizer;
  std::unique_ptr<nn::GPT> model;
  std::unique_ptr<optim::AdamW> optimizer;
  int64_t step = 0;  // optimizer steps completed
  Device device = Device::cpu();            // runtime.device
  std::optional<DType> precision;          // runtime.precision: the autocast dtype, none for f32
};

// Reads CONFIG.ini plus overrides; resolves model.vocab_size from the
// tokenizer when 0.
train::Config load_text_config(const std::string& path, const std::vector<std::string>& overrides);

// Checks that the run directory's saved config has the same model shape.
void check_same_shape(const train::Config& config, const std::string& run_dir);

// Builds the model (seeded) on runtime.device and its optimizer; reads
// runtime.precision. Errors name the key when the device is unusable.
void build_model(TextRun& run);

// Loads the tokenizer named by data.tokenizer, if any.
void load_tokenizer(TextRun& run);

}  // namespace fm::app

#include "text_run.h"

#include <filesystem>

#include "fm/autocast.h"
#include "fm/factory.h"
#include "fm/nn/flat.h"
#include "text_recipe.h"

#ifdef FM_HAVE_CUDA
#include "fm/cuda/cuda.h"
#endif

namespace fm::app {

train::Config load_text_config(const std::string& path, const std::vector<std::string>& overrides) {
  train::Config c = text_recipe_config();
  c.parse_file(path);
  c.parse_overrides(overrides);
  if (c.get_int("model.vocab_size") == 0) {
    const std::string tok = c.get_string("data.tokenizer");
    if (tok.empty()) error("config: model.vocab_size is 0 and no data.tokenizer is given to take it from");
    c.set("model.vocab_size", std::to_string(text::BpeTokenizer::load(tok).vocab_size()), "data.tokenizer");
  }
  return c;
}

void check_same_shape(const train::Config& config, const std::string& run_dir) {
  const std::string saved_path = (std::filesystem::path(run_dir) / "config.ini").string();
  train::Config saved = text_recipe_config();
  saved.parse_file(saved_path);
  for (const auto& key : model_shape_keys())
    if (saved.get_int(key) != config.get_int(key))
      error("run directory ", run_dir, " was made for ", key, " = ", saved.get_int(key), " (", saved_path,
            "), but this config gives ", config.get_int(key));
}

Device parse_device(const std::string& value) {
  Device d;
  try {
    d = Device::parse(value);
  } catch (const Error& e) {
    error("runtime.device: ", e.what());
  }
  if (d.is_cuda()) {
#ifdef FM_HAVE_CUDA
    if (d.index >= cuda::device_count())
      error("runtime.device '", value, "': ", cuda::device_count(), " CUDA device(s) present");
    cuda::set_device(d.index);
#else
    error("runtime.device '", value, "': this build of fm has no CUDA backend");
#endif
  }
  return d;
}

void build_model(TextRun& run) {
  run.device = parse_device(run.config.get_string("runtime.device"));
  run.precision = parse_precision(run.config.get_string("runtime.precision"), "runtime.precision");
  manual_seed(uint64_t(run.config.get_int("train.seed")));
  run.model = std::make_unique<nn::GPT>(gpt_options(run.config));
  run.model->to(run.device);  // initialised on the CPU (the same numbers everywhere), then moved
  nn::flatten_parameters(*run.model);
  optim::AdamWOptions o;
  o.lr = run.config.get_double("train.lr");
  o.beta2 = run.config.get_double("train.beta2");
  o.weight_decay = run.config.get_double("train.weight_decay");
  run.optimizer = std::make_unique<optim::AdamW>(*run.model, o);
}

void load_tokenizer(TextRun& run) {
  const std::string path = run.config.get_string("data.tokenizer");
  if (!path.empty()) run.tokenizer = text::BpeTokenizer::load(path);
}

}  // namespace fm::app

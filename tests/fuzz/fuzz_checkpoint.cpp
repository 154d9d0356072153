// load_checkpoint on a step directory whose train_state.safetensors (first
// input byte even) or model.safetensors (odd) is the rest of the input, the
// other file valid: the train state's tensors and JSON metadata, and the
// strict state-dict load.
#include <cstdint>
#include <filesystem>
#include <string>

#include "fm/error.h"
#include "fm/io/checkpoint.h"
#include "fm/nn/layers.h"
#include "fuzz_util.h"

namespace {

// A valid checkpoint of a tiny model, written once; its two files are kept.
struct Valid {
  std::string model_file, state_file;
};

const Valid& valid() {
  static const Valid v = [] {
    fm::nn::Linear model({.in_features = 2, .out_features = 3});
    fm::io::TrainState state;
    state.step = 1;
    state.config = "[model]\nn_layer = 1\n";
    state.extra["schedule"] = "cosine";
    state.positions["val"] = 7;
    const std::string dir = fm::io::save_checkpoint((fm::fuzz::scratch_dir() / "valid").string(), model, state);
    Valid out;
    out.model_file = dir + "/model.safetensors";
    out.state_file = dir + "/train_state.safetensors";
    return out;
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Valid& v = valid();
  const bool fuzz_model = data[0] & 1;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::filesystem::path dir = fm::fuzz::scratch_dir() / "step_1";
  std::filesystem::create_directories(dir);
  fm::fuzz::write_file("step_1/model.safetensors", fuzz_model ? bytes : std::string_view{});
  fm::fuzz::write_file("step_1/train_state.safetensors", fuzz_model ? std::string_view{} : bytes);
  std::filesystem::copy_file(fuzz_model ? v.state_file : v.model_file,
                             dir / (fuzz_model ? "train_state.safetensors" : "model.safetensors"),
                             std::filesystem::copy_options::overwrite_existing);
  fm::nn::Linear model({.in_features = 2, .out_features = 3});
  try {
    const fm::io::TrainState st = fm::io::load_checkpoint(dir.string(), model);
    volatile size_t sink = st.config.size() + st.extra.size() + st.optimizer.size() + st.tensors.size();
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  try {
    volatile size_t sink = fm::io::latest_checkpoint(fm::fuzz::scratch_dir().string()).size();
    (void)sink;
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

#include "fm/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "fm/autograd.h"
#include "fm/factory.h"

namespace fm::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "libfm-train-state-1";

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) error("save_checkpoint: ", dir.string(), ": cannot open directory to sync");
  ::fsync(fd);
  ::close(fd);
}

Tensor i64_scalar(int64_t v) { return tensor(std::vector<int64_t>{v}).view({}); }

int64_t read_i64(const TensorMap& t, const std::string& name, const std::string& file) {
  auto it = t.find(name);
  if (it == t.end()) error("load_checkpoint: ", file, ": tensor '", name, "' missing");
  if (it->second.dtype() != DType::i64 || it->second.numel() != 1)
    error("load_checkpoint: ", file, ": tensor '", name, "' must be one int64, got ", it->second.dtype(), " ",
          it->second.shape());
  return it->second.item<int64_t>();
}

}  // namespace

std::string save_checkpoint(const std::string& checkpoints_dir, const nn::Module& model, const TrainState& state) {
  NoGradGuard ng;
  const fs::path root(checkpoints_dir);
  fs::create_directories(root);
  const fs::path final_dir = root / ("step_" + std::to_string(state.step));
  const fs::path tmp_dir = root / (".step_" + std::to_string(state.step) + ".tmp." + std::to_string(::getpid()));
  fs::remove_all(tmp_dir);
  fs::create_directory(tmp_dir);

  TensorMap weights;
  for (const auto& [name, t] : model.state_dict()) weights[name] = t;
  save_safetensors((tmp_dir / "model.safetensors").string(), weights, {{"format", "libfm-model-1"}});

  TensorMap ts;
  for (const auto& [name, t] : state.optimizer) ts["optim." + name] = t;
  ts["step"] = i64_scalar(state.step);
  ts["data_position"] = i64_scalar(state.data_position);
  ts["rng"] = tensor(std::vector<int64_t>{int64_t(state.rng.seed), int64_t(state.rng.offset)});
  Metadata meta = state.extra;
  meta["format"] = kFormat;
  meta["config"] = state.config;
  save_safetensors((tmp_dir / "train_state.safetensors").string(), ts, meta);
  fsync_dir(tmp_dir);

  // Swap the finished directory into place; an older one of the same step is
  // moved aside first and removed only after the rename.
  fs::path old_dir;
  if (fs::exists(final_dir)) {
    old_dir = root / (".step_" + std::to_string(state.step) + ".old." + std::to_string(::getpid()));
    fs::remove_all(old_dir);
    fs::rename(final_dir, old_dir);
  }
  fs::rename(tmp_dir, final_dir);
  fsync_dir(root);
  if (!old_dir.empty()) fs::remove_all(old_dir);
  return final_dir.string();
}

TrainState load_checkpoint(const std::string& step_dir, nn::Module& model) {
  const fs::path dir(step_dir);
  const std::string model_file = (dir / "model.safetensors").string();
  const std::string state_file = (dir / "train_state.safetensors").string();
  Safetensors weights = load_safetensors(model_file);
  Safetensors st = load_safetensors(state_file);
  if (st.metadata["format"] != kFormat)
    error("load_checkpoint: ", state_file, ": not a libfm train state (format '", st.metadata["format"], "')");

  TrainState out;
  out.step = read_i64(st.tensors, "step", state_file);
  out.data_position = read_i64(st.tensors, "data_position", state_file);
  auto rng = st.tensors.find("rng");
  if (rng == st.tensors.end() || rng->second.dtype() != DType::i64 || rng->second.shape() != Shape{2})
    error("load_checkpoint: ", state_file, ": tensor 'rng' must be int64 [2]");
  const auto r = rng->second.to_vector<int64_t>();
  out.rng = {uint64_t(r[0]), uint64_t(r[1])};
  out.config = st.metadata["config"];
  for (const auto& [k, v] : st.metadata)
    if (k != "format" && k != "config") out.extra[k] = v;
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("optim.", 0) == 0) out.optimizer[name.substr(6)] = t;

  try {
    model.load_state_dict(nn::StateDict(weights.tensors.begin(), weights.tensors.end()), true);
  } catch (const Error& e) {
    error(model_file, ": ", e.what());
  }
  return out;
}

std::string latest_checkpoint(const std::string& checkpoints_dir, std::vector<std::string>* skipped) {
  std::map<int64_t, fs::path, std::greater<>> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("step_", 0) != 0) continue;
    const std::string num = name.substr(5);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    steps[std::stoll(num)] = entry.path();
  }
  for (const auto& [step, path] : steps) {
    try {
      load_safetensors((path / "model.safetensors").string());
      load_safetensors((path / "train_state.safetensors").string());
      return path.string();
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return "";
}

}  // namespace fm::io

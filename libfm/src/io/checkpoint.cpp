#include "fm/io/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "fm/autograd.h"
#include "fm/factory.h"

namespace fm::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "libfm-train-state-1";
const char* const kReservedKeys[] = {"format", "config"};  // metadata keys the train state itself uses

bool is_reserved(const std::string& key) {
  for (const char* r : kReservedKeys)
    if (key == r) return true;
  return false;
}

void fsync_dir(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) error("save_checkpoint: ", dir.string(), ": cannot open directory to sync: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) error("save_checkpoint: ", dir.string(), ": fsync: ", std::strerror(saved));
}

// Unique per writer: pid alone is not, when two threads of one process save.
fs::path temp_dir_for(const fs::path& root, int64_t step) {
  static std::atomic<uint64_t> counter{0};
  return root / (".step_" + std::to_string(step) + ".tmp." + std::to_string(::getpid()) + "." +
                 std::to_string(counter++));
}

// Temp folders a killed writer left behind (".step_N.tmp.PID.K" of a PID
// that no longer runs): a preempted job would otherwise fill the disk with a
// checkpoint's worth per kill. A live writer's folders are left alone.
void remove_orphaned_temps(const fs::path& root) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.find(".tmp.");
    if (name.rfind(".step_", 0) != 0 || at == std::string::npos) continue;
    const long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
    if (pid <= 0 || pid == long(::getpid())) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}

// Removes the directory at `path` (when set) on every way out of a save.
struct TempDir {
  fs::path path;
  ~TempDir() {
    std::error_code ignored;
    if (!path.empty()) fs::remove_all(path, ignored);
  }
};

// Puts the complete `tmp` at `final_dir`. An existing `final_dir` is swapped
// out in one atomic exchange (so step_N never disappears) and left at `tmp`.
void move_into_place(const fs::path& tmp, const fs::path& final_dir) {
  if (!fs::exists(final_dir)) {
    fs::rename(tmp, final_dir);
    return;
  }
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_dir.c_str(), RENAME_EXCHANGE) != 0)
    error("save_checkpoint: ", final_dir.string(), ": cannot replace the existing checkpoint: ", std::strerror(errno));
}

Tensor i64_scalar(int64_t v) { return tensor(std::vector<int64_t>{v}).view({}); }

// The value of a one-element int64 tensor, exactly (item() goes through double).
int64_t read_i64(const TensorMap& t, const std::string& name, const std::string& file) {
  auto it = t.find(name);
  if (it == t.end()) error("load_checkpoint: ", file, ": tensor '", name, "' missing");
  if (it->second.dtype() != DType::i64 || it->second.numel() != 1)
    error("load_checkpoint: ", file, ": tensor '", name, "' must be one int64, got ", it->second.dtype(), " ",
          it->second.shape());
  return it->second.to_vector<int64_t>()[0];
}

Tensor rng_tensor(const PhiloxState& s) { return tensor(std::vector<int64_t>{int64_t(s.seed), int64_t(s.offset)}); }

PhiloxState read_rng(const TensorMap& t, const std::string& name, const std::string& file) {
  auto it = t.find(name);
  if (it == t.end() || it->second.dtype() != DType::i64 || it->second.shape() != Shape{2})
    error("load_checkpoint: ", file, ": tensor '", name, "' must be int64 [2]");
  const auto r = it->second.to_vector<int64_t>();
  return {uint64_t(r[0]), uint64_t(r[1])};
}

// The index of the first NaN or infinity in a floating-point tensor (its
// exponent bits all ones), or -1.
int64_t first_non_finite(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto scan = [&](auto bits, auto exponent) -> int64_t {
    const auto* p = static_cast<const decltype(bits)*>(c.data_ptr());
    for (int64_t i = 0; i < c.numel(); ++i)
      if ((p[i] & exponent) == exponent) return i;
    return -1;
  };
  switch (c.dtype()) {
    case DType::f32: return scan(uint32_t{}, uint32_t{0x7F800000});
    case DType::f64: return scan(uint64_t{}, uint64_t{0x7FF0000000000000});
    case DType::bf16: return scan(uint16_t{}, uint16_t{0x7F80});
    case DType::f16: return scan(uint16_t{}, uint16_t{0x7C00});
    default: return -1;
  }
}

// Training from a NaN or infinite weight or optimizer state would carry it
// into every later step: such a checkpoint (from a diverged run, or damaged)
// is refused, naming the tensor.
void check_finite(const TensorMap& tensors, const std::string& file, const std::string& prefix = "") {
  for (const auto& [name, t] : tensors) {
    const int64_t i = first_non_finite(t);
    if (i >= 0)
      error("load_checkpoint: ", file, ": tensor '", prefix, name, "' holds a NaN or infinity at element ", i,
            " (a diverged run or a damaged file); training cannot continue from it");
  }
}

// Parses and checks a train_state file; touches nothing.
TrainState read_train_state(const std::string& file) {
  Safetensors st = load_safetensors(file);
  const auto format = st.metadata.find("format");
  if (format == st.metadata.end() || format->second != kFormat)
    error("load_checkpoint: ", file, ": not a libfm train state (format '",
          format == st.metadata.end() ? "" : format->second, "')");
  TrainState out;
  out.step = read_i64(st.tensors, "step", file);
  out.data_position = read_i64(st.tensors, "data_position", file);
  out.rng = read_rng(st.tensors, "rng", file);
  for (const auto& [name, t] : st.tensors) {
    if (name.rfind("data_position.", 0) == 0) out.positions[name.substr(14)] = read_i64(st.tensors, name, file);
    if (name.rfind("state.", 0) == 0) out.tensors[name.substr(6)] = t;
    if (name.rfind("rng.", 0) == 0) out.rngs[name.substr(4)] = read_rng(st.tensors, name, file);
  }
  for (const auto& [k, v] : st.metadata) {
    if (k == "config") out.config = v;
    else if (!is_reserved(k)) out.extra[k] = v;
  }
  for (const auto& [name, t] : st.tensors)
    if (name.rfind("optim.", 0) == 0) out.optimizer[name.substr(6)] = t;
  return out;
}

// N for a directory named step_N, or -1.
int64_t step_of(const std::string& dir_name) {
  if (dir_name.rfind("step_", 0) != 0) return -1;
  const std::string num = dir_name.substr(5);
  if (num.empty() || num.size() > 18 || num.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(num);
}

}  // namespace

namespace {
std::string save_weights_and_state(const std::string& checkpoints_dir, const nn::StateDict& weights,
                                   const Metadata& weights_meta, const TrainState& state) {
  if (state.step < 0) error("save_checkpoint: step must be >= 0, got ", state.step);
  for (const auto& [k, v] : state.extra)
    if (is_reserved(k)) error("save_checkpoint: extra metadata key '", k, "' is reserved for the train state");
  NoGradGuard ng;
  const fs::path root(checkpoints_dir);
  const fs::path final_dir = root / ("step_" + std::to_string(state.step));
  TempDir tmp;  // the new checkpoint until it is moved; then the replaced one, if any
  try {
    fs::create_directories(root);
    remove_orphaned_temps(root);
    tmp.path = temp_dir_for(root, state.step);
    const fs::path& tmp_dir = tmp.path;
    fs::create_directory(tmp_dir);

    save_safetensors((tmp_dir / "model.safetensors").string(), TensorMap(weights.begin(), weights.end()), weights_meta);

    TensorMap ts;
    for (const auto& [name, t] : state.optimizer) ts["optim." + name] = t;
    ts["step"] = i64_scalar(state.step);
    ts["data_position"] = i64_scalar(state.data_position);
    ts["rng"] = rng_tensor(state.rng);
    for (const auto& [name, p] : state.positions) ts["data_position." + name] = i64_scalar(p);
    for (const auto& [name, r] : state.rngs) ts["rng." + name] = rng_tensor(r);
    for (const auto& [name, t] : state.tensors) ts["state." + name] = t;
    Metadata meta = state.extra;
    meta["format"] = kFormat;
    meta["config"] = state.config;
    save_safetensors((tmp_dir / "train_state.safetensors").string(), ts, meta);
    fsync_dir(tmp_dir);

    move_into_place(tmp_dir, final_dir);
    fsync_dir(root);
  } catch (const fs::filesystem_error& e) {
    error("save_checkpoint: ", e.what());
  }
  return final_dir.string();
}
}  // namespace

std::string save_checkpoint(const std::string& checkpoints_dir, const nn::Module& model, const TrainState& state) {
  return save_weights_and_state(checkpoints_dir, model.state_dict(), {{"format", "libfm-model-1"}}, state);
}

std::string save_checkpoint(const std::string& checkpoints_dir, const nn::StateDict& trainable, const TrainState& state) {
  return save_weights_and_state(checkpoints_dir, trainable, {{"format", "libfm-model-1"}, {"weights", "trainable"}}, state);
}

TrainState load_checkpoint(const std::string& step_dir, nn::Module& model) {
  const fs::path dir(step_dir);
  const std::string model_file = (dir / "model.safetensors").string();
  const std::string state_file = (dir / "train_state.safetensors").string();
  // Both files are read and checked before the model is touched.
  Safetensors weights = load_safetensors(model_file);
  check_finite(weights.tensors, model_file);
  TrainState out = read_train_state(state_file);
  check_finite(out.optimizer, state_file, "optim.");
  check_finite(out.tensors, state_file, "state.");
  try {
    const bool partial = weights.metadata.count("weights") && weights.metadata.at("weights") == "trainable";
    if (partial) {
      const nn::StateDict mine = model.state_dict();
      for (const auto& [name, t] : weights.tensors)
        if (!mine.count(name)) error("a fine-tuning checkpoint's tensor '", name, "' is not in the model");
    }
    model.load_state_dict(nn::StateDict(weights.tensors.begin(), weights.tensors.end()), !partial);
  } catch (const Error& e) {
    error("load_checkpoint: ", model_file, ": ", e.what());
  }
  return out;
}

std::string latest_checkpoint(const std::string& checkpoints_dir, std::vector<std::string>* skipped) {
  std::map<int64_t, fs::path, std::greater<>> steps;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(checkpoints_dir, ec)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_directory(ec)) steps[step] = entry.path();
  }
  for (const auto& [step, path] : steps) {
    try {
      load_safetensors((path / "model.safetensors").string());
      const std::string state_file = (path / "train_state.safetensors").string();
      const int64_t saved_step = read_train_state(state_file).step;
      if (saved_step != step) error("latest_checkpoint: ", state_file, ": holds step ", saved_step);
      return path.string();
    } catch (const Error& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return "";
}

}  // namespace fm::io

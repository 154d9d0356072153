#include "fm/train/recipe.h"

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fm/error.h"
#include "fm/train/finetune.h"
#include "fm/train/task.h"

#ifdef FM_HAVE_CUDA
#include "fm/cuda/cuda.h"
#endif

namespace fm::train {
namespace po = boost::program_options;

void declare_trainer_keys(Config& c) {
  c.add_string("task.kind", "lm", "model kind: " + [] {
     std::string names;
     for (const auto& n : task_names()) names += (names.empty() ? "" : ", ") + n;
     return names;
   }())
      .add_int("train.batch_size", 8, "samples per micro-batch")
      .add_int("train.grad_accum", 1, "micro-batches per optimizer step")
      .add_int("train.max_steps", 1000, "optimizer steps")
      .add_double("train.lr", 1e-3, "peak learning rate")
      .add_double("train.min_lr", 1e-4, "final learning rate")
      .add_int("train.warmup_steps", 100, "linear warmup steps")
      .add_string("train.schedule", "cosine", "cosine, linear or constant after warmup")
      .add_double("train.weight_decay", 0.1, "AdamW weight decay (not on norms, biases, embeddings)")
      .add_double("train.beta1", 0.9, "AdamW beta1")
      .add_double("train.beta2", 0.99, "AdamW beta2")
      .add_double("train.grad_clip", 1.0, "clip the global gradient norm (0: off)")
      .add_string("train.nonfinite", "stop", "a step with a NaN/Inf loss or gradient: 'stop' the run, or 'skip' the update (f16's loss scaler skips overflows either way)")
      .add_double("train.ema_decay", 0, "keep an EMA of the weights with this decay, saved in checkpoints and used by evaluations and samples (0: none)")
      .add_bool("train.ema_warmup", true, "EMA decay min(ema_decay, (1 + step) / (10 + step)), as diffusers")
      .add_int("train.eval_every", 250, "steps between evaluations (0: only at the end)")
      .add_int("train.save_every", 500, "steps between checkpoints (the last step is always saved)")
      .add_int("train.log_every", 10, "steps between progress lines")
      .add_int("train.sample_every", 0, "steps between samples in the logs (0: at evaluations)")
      .add_string("train.target", "", "quality target fm eval checks, e.g. 'zeroshot_top1 >= 0.80' (empty: none)")
      .add_int("train.seed", 1337, "seed of initialisation, data order and dropout")
      .add_int("runtime.threads", 0, "CPU threads (0: all cores)")
      .add_string("runtime.device", "cpu", "cpu or cuda:N (cuda: cuda:LOCAL_RANK on each rank of a launcher)")
      .add_string("runtime.precision", "f32", "f32, bf16 (bf16 matrix products, f32 master weights and optimizer), or f16 (the same with a dynamic loss scaler)")
      .add_double("runtime.peak_gflops", 0, "peak for MFU (0: measure a GEMM at start)")
      .add_int("train.zero_stage", 0, "1: ZeRO-1, AdamW state sharded across ranks (reduce-scatter, update, all-gather)")
      .add_double("runtime.bucket_mb", 25, "data parallelism: gradient all-reduce bucket size in MiB")
      .add_double("runtime.dist_timeout", 300, "data parallelism: seconds a collective may wait for the other ranks")
      .add_string("run.dir", "runs/default", "run directory")
      .add_bool("run.handle_signals", true, "SIGTERM/SIGINT: finish the step, save a checkpoint, exit 128 + signal")
      .add_int("run.stop_after", 0, "stop this invocation after N steps (0: run to max_steps); resume later");
  declare_finetune_keys(c);
}

Config recipe_config(const std::string& kind) {
  Config c;
  declare_trainer_keys(c);
  find_task(kind).declare_keys(c);
  c.set("task.kind", kind, "recipe");
  return c;
}

std::string recipe_kind(const std::string& path, const std::vector<std::string>& overrides) {
  std::string kind = "lm";
  std::ifstream in(path);
  if (!in) error("config: cannot read '", path, "'");
  po::options_description desc;
  desc.add_options()("task.kind", po::value<std::string>());
  try {
    po::variables_map vm;
    po::store(po::parse_config_file(in, desc, true), vm);  // other keys are checked later, against the kind
    if (vm.count("task.kind")) kind = vm["task.kind"].as<std::string>();
  } catch (const po::error& e) {
    error("config: ", path, ": ", e.what());
  }
  for (size_t i = 0; i < overrides.size(); ++i) {
    const std::string& a = overrides[i];
    if (a.rfind("--task.kind=", 0) == 0) kind = a.substr(12);
    else if (a == "--task.kind" && i + 1 < overrides.size()) kind = overrides[i + 1];
  }
  return kind;
}

Config load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  const std::string kind = recipe_kind(path, overrides);
  Config c = recipe_config(kind);
  c.parse_file(path);
  c.parse_overrides(overrides);
  if (const auto& resolve = find_task(kind).resolve) resolve(c);
  return c;
}

Config load_run_config(const std::string& run_dir, const std::vector<std::string>& overrides) {
  const std::string path = (std::filesystem::path(run_dir) / "config.ini").string();
  if (!std::filesystem::exists(path)) error(run_dir, " is not a run directory (no config.ini)");
  return load_recipe(path, overrides);
}

void check_same_shape(const Config& config, const std::string& run_dir) {
  const std::string saved_path = (std::filesystem::path(run_dir) / "config.ini").string();
  const std::string kind = config.get_string("task.kind");
  const std::string saved_kind = recipe_kind(saved_path);
  if (saved_kind != kind)
    error("run directory ", run_dir, " holds a '", saved_kind, "' run (", saved_path, "), not '", kind, "'");
  Config saved = recipe_config(kind);
  saved.parse_file(saved_path);
  for (const auto& key : find_task(kind).shape_keys) {
    const std::string a = saved.text(key), b = config.text(key);
    if (a != b)
      error("run directory ", run_dir, " was made for ", key, " = ", a, " (", saved_path, "), but this config gives ",
            b);
  }
}

bool Target::met(double figure) const {
  if (op == ">=") return figure >= value;
  if (op == "<=") return figure <= value;
  return op == ">" ? figure > value : figure < value;
}

std::string Target::str() const {
  std::ostringstream os;
  os << metric << " " << op << " " << value;
  return os.str();
}

std::optional<Target> parse_target(const std::string& text) {
  std::istringstream in(text);
  Target t;
  std::string value, rest;
  if (!(in >> t.metric)) return std::nullopt;
  in >> t.op >> value;
  const bool op_ok = t.op == ">=" || t.op == "<=" || t.op == ">" || t.op == "<";
  size_t used = 0;
  try {
    t.value = std::stod(value, &used);
  } catch (...) {
    used = 0;
  }
  if (!op_ok || used == 0 || used != value.size() || (in >> rest))
    error("config: key 'train.target': '", text, "' is not 'METRIC OP VALUE' (OP one of >=, <=, >, <)");
  return t;
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

optim::LRSchedule lr_schedule(const Config& c) {
  optim::LRSchedule s;
  s.kind = c.get_string("train.schedule");
  s.lr = c.get_double("train.lr");
  s.min_lr = c.get_double("train.min_lr");
  s.warmup_steps = c.get_int("train.warmup_steps");
  s.max_steps = c.get_int("train.max_steps");
  s.validate();
  return s;
}

}  // namespace fm::train

// fm sweep RECIPE.ini --grid "KEY=V1,V2 ..." [--out SWEEP_DIR] [--dry-run] [--key=value ...]
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "fm/dist/communicator.h"
#include "fm/dist/launch.h"
#include "fm/error.h"
#include "fm/nn/layers.h"
#include "fm/train/recipe.h"
#include "fm/train/sweep.h"
#include "fm/train/trainer.h"

namespace fm::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kUsage =
    "usage: fm sweep RECIPE.ini --grid \"KEY=V1,V2 ...\" [--out SWEEP_DIR] [--dry-run] [--key=value ...]\n\n"
    "Trains the recipe at every point of the grid, each point a run in SWEEP_DIR/<point>/\n"
    "(default SWEEP_DIR: runs/<recipe name>). The grid is space-separated axes KEY=V1,V2,...;\n"
    "keys joined by ':' vary together (\"model.n_layer:model.d_model=2:64,4:128\"); the points\n"
    "are the axes' Cartesian product. --key=value overrides apply to every point.\n\n"
    "Each finished point writes <point>/summary.json, and SWEEP_DIR/sweep.jsonl collects them,\n"
    "one line per point: the grid values, parameters (params: without the embedding tables,\n"
    "as Kaplan et al.; params_total), steps, samples and tokens seen, training FLOPs\n"
    "(flops_per_sample x samples), the final val_loss, train_loss (the mean over the last 10%\n"
    "of steps) and the last logged value of every metric. fm scaling fit reads it.\n\n"
    "Run again, a sweep skips its finished points and resumes a half-done one from its newest\n"
    "checkpoint. Several processes share a sweep: under a launcher (mpirun -np W fm sweep ...),\n"
    "or started side by side, each trains the next point no other has claimed, as a\n"
    "single-process run, until the grid is done.\n";

// Parameters in embedding tables (token and position embeddings; a tied
// output head shares the token table and is counted once).
int64_t embedding_parameters(const nn::Module& m) {
  int64_t n = 0;
  if (dynamic_cast<const nn::Embedding*>(&m)) n += m.num_parameters();
  else
    for (const auto& [name, child] : m.named_children()) n += embedding_parameters(*child);
  return n;
}

void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    out.flush();
    if (!out) error("sweep: cannot write ", tmp.string());
  }
  fs::rename(tmp, path);
}

json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) error("sweep: cannot read ", path.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    error("sweep: ", path.string(), " is not valid JSON: ", e.what());
  }
}

// The run's final figures from its metrics.jsonl: the last value of every
// key, and train_loss as the mean over the last 10% of steps (one step's
// loss is noisy).
json final_metrics(const fs::path& metrics_path) {
  std::ifstream in(metrics_path);
  if (!in) error("sweep: cannot read ", metrics_path.string());
  json last = json::object();
  std::vector<std::pair<int64_t, double>> train;
  int64_t final_step = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      error("sweep: ", metrics_path.string(), ": a line is not JSON: ", e.what());
    }
    final_step = j.value("step", final_step);
    for (const auto& [k, v] : j.items())
      if (k != "step" && v.is_number()) last[k] = v;
    if (j.contains("train_loss") && j["train_loss"].is_number()) train.push_back({final_step, j["train_loss"].get<double>()});
  }
  if (train.empty()) error("sweep: ", metrics_path.string(), " logged no train_loss");
  const int64_t from = final_step - std::max<int64_t>(1, final_step / 10);
  double sum = 0;
  int n = 0;
  for (const auto& [step, loss] : train)
    if (step > from) sum += loss, ++n;
  last["train_loss"] = sum / n;
  return last;
}

// An flock on a file, released when the object goes or the process ends,
// however it ends: a killed sweep leaves no stale claim behind.
class FileLock {
 public:
  FileLock(const fs::path& path, bool wait) {
    fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd_ < 0) error("sweep: cannot open ", path.string());
    if (::flock(fd_, wait ? LOCK_EX : LOCK_EX | LOCK_NB) == 0) return;
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (wait || err != EWOULDBLOCK) error("sweep: cannot lock ", path.string());
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Rewrites SWEEP_DIR/sweep.jsonl from every finished point's summary.json,
// under the sweep's lock: processes finishing together take turns, so the
// last rewrite sees every summary.
void write_sweep_table(const fs::path& out) {
  FileLock lock(out / ".sweep.lock", /*wait=*/true);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_directory() && fs::exists(e.path() / "summary.json")) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::string table;
  for (const auto& d : dirs) table += read_json(d / "summary.json").dump() + "\n";
  write_atomically(out / "sweep.jsonl", table);
}

// The sweep's own record: the recipe and the overrides every point shares.
// A second invocation with other overrides would mix runs that differ in
// ways the summaries do not show, so it is refused.
void check_manifest(const fs::path& out, const std::string& recipe, const std::vector<std::string>& overrides,
                    const std::string& grid) {
  FileLock lock(out / ".sweep.lock", /*wait=*/true);
  const fs::path path = out / "sweep.json";
  if (fs::exists(path)) {
    const json saved = read_json(path);
    const auto before = saved.value("overrides", std::vector<std::string>{});
    if (before == overrides) return;
    auto missing_from = [](const std::vector<std::string>& a, const std::vector<std::string>& b) {
      std::string list;
      for (const auto& v : a)
        if (std::find(b.begin(), b.end(), v) == b.end()) list += " " + v;
      return list.empty() ? " (none)" : list;
    };
    error("sweep: ", out.string(), " was swept with other overrides (added now:", missing_from(overrides, before),
          "; dropped:", missing_from(before, overrides), "); use another --out");
  }
  write_atomically(path, json{{"recipe", recipe}, {"grid", grid}, {"overrides", overrides}}.dump(2) + "\n");
}

struct Options {
  std::string recipe, grid, out;
  bool dry_run = false;
  std::vector<std::string> overrides;
};

Options parse(const std::vector<std::string>& args) {
  Options o;
  o.recipe = args[0];
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& flag) {
      if (a.size() > flag.size() && a.compare(0, flag.size() + 1, flag + "=") == 0) return a.substr(flag.size() + 1);
      if (i + 1 >= args.size()) error("sweep: ", flag, " needs a value");
      return args[++i];
    };
    if (a == "--grid" || a.rfind("--grid=", 0) == 0) o.grid = value("--grid");
    else if (a == "--out" || a.rfind("--out=", 0) == 0) o.out = value("--out");
    else if (a == "--dry-run") o.dry_run = true;
    else if (a.rfind("--run.dir", 0) == 0) error("sweep: each point's run.dir is SWEEP_DIR/<point>; set --out instead");
    else o.overrides.push_back(a);
  }
  if (o.grid.empty()) error("sweep: --grid is required (see fm sweep --help)");
  if (o.out.empty()) o.out = (fs::path("runs") / fs::path(o.recipe).stem()).string();
  return o;
}

// The point's config: the recipe, the sweep's overrides, the point's values.
train::Config point_config(const Options& o, const train::SweepPoint& p, const fs::path& dir) {
  std::vector<std::string> overrides = o.overrides;
  for (const auto& v : p.overrides()) overrides.push_back(v);
  overrides.push_back("--run.dir=" + dir.string());
  return train::load_recipe(o.recipe, overrides);
}

// Trains one point (resuming what is there) and writes its summary.json.
// Returns the signal that stopped it, or 0.
int run_point(const Options& o, const train::SweepPoint& p, const fs::path& dir) {
  train::Config config = point_config(o, p, dir);
  const int64_t max_steps = config.get_int("train.max_steps");
  const int64_t accum = config.get_int("train.grad_accum");
  train::Trainer trainer(std::move(config), /*resume=*/true);
  trainer.run();
  if (trainer.stopped_by()) return trainer.stopped_by();
  if (trainer.step() < max_steps) {
    std::printf("fm sweep: %s stopped at step %lld of %lld (run.stop_after); run the sweep again to finish it\n",
                p.name.c_str(), (long long)trainer.step(), (long long)max_steps);
    return 0;
  }
  train::Task& task = trainer.task();
  const int64_t total = task.model().num_parameters();
  const int64_t samples = trainer.step() * accum * task.batch_samples();
  json values = json::object();
  for (const auto& [k, v] : p.values) values[k] = v;
  const json metrics = final_metrics(dir / "metrics.jsonl");
  json s = {{"point", p.name},
            {"values", values},
            {"params", total - embedding_parameters(task.model())},
            {"params_total", total},
            {"steps", trainer.step()},
            {"samples", samples},
            {"tokens", samples * task.tokens_per_sample()},
            {"flops", double(samples) * task.flops_per_sample()},
            {"train_loss", metrics["train_loss"]},
            {"metrics", metrics}};
  if (metrics.contains("val_loss")) s["val_loss"] = metrics["val_loss"];
  write_atomically(dir / "summary.json", s.dump(2) + "\n");
  return 0;
}

}  // namespace

int cmd_sweep(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h" ||
      std::find(args.begin(), args.end(), "--help") != args.end()) {
    std::printf("%s", kUsage);
    return args.empty() ? 2 : 0;
  }
  const Options o = parse(args);
  const std::vector<train::SweepPoint> points = train::expand_grid(o.grid);
  // Every point's config is checked before any trains: a typo in the grid
  // fails now, not hours in.
  for (const auto& p : points) {
    for (const auto& [k, v] : p.values)
      if (k == "run.dir") error("sweep: run.dir cannot be on the grid (each point's run is SWEEP_DIR/<point>)");
    point_config(o, p, fs::path(o.out) / p.name);
  }
  // Processes share the points out through claims (SWEEP_DIR/.locks/): each
  // trains the next point that is neither finished nor claimed, alone. So
  // the ranks of a launcher, or sweeps started side by side, keep busy
  // until the grid is done, and a claim dies with its process.
  const dist::Launch launch = dist::detect_launch();
  if (launch.world_size > 1) dist::use_single_process_world();
  const std::string who = launch.world_size > 1 ? " (rank " + std::to_string(launch.rank) + ")" : "";
  const fs::path out(o.out);
  if (o.dry_run) {
    for (const auto& p : points) {
      std::string line = (out / p.name).string() + ":";
      for (const auto& v : p.overrides()) line += " " + v;
      const bool done = fs::exists(out / p.name / "summary.json");
      const bool claimed = !done && fs::exists(out / ".locks") && !FileLock(out / ".locks" / (p.name + ".lock"), false).held();
      std::printf("%s%s\n", line.c_str(), done ? " (done)" : claimed ? " (being trained)" : "");
    }
    return 0;
  }
  fs::create_directories(out / ".locks");
  check_manifest(out, o.recipe, o.overrides, o.grid);
  int done = 0, trained = 0, elsewhere = 0;
  for (size_t i = 0; i < points.size(); ++i) {
    const train::SweepPoint& p = points[i];
    const fs::path dir = out / p.name;
    if (fs::exists(dir / "summary.json")) {
      std::printf("fm sweep%s: %s is done; skipped\n", who.c_str(), p.name.c_str());
      ++done;
      continue;
    }
    FileLock claim(out / ".locks" / (p.name + ".lock"), /*wait=*/false);
    if (!claim.held()) {
      ++elsewhere;
      continue;
    }
    if (fs::exists(dir / "summary.json")) {  // finished by another process while this one looked
      ++elsewhere;
      continue;
    }
    std::printf("fm sweep%s: point %zu of %zu: %s\n", who.c_str(), i + 1, points.size(), p.name.c_str());
    std::fflush(stdout);
    const int sig = run_point(o, p, dir);
    write_sweep_table(out);
    if (sig) return 128 + sig;  // the shell's code for a signal, as fm train
    ++trained;
  }
  std::printf("fm sweep%s: %d point(s) trained, %d already done, %d by other processes; summary %s\n", who.c_str(),
              trained, done, elsewhere, (out / "sweep.jsonl").string().c_str());
  return 0;
}

}  // namespace fm::app

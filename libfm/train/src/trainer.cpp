#include "fm/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "fm/autocast.h"
#include "fm/autograd.h"
#include "fm/dist/communicator.h"
#include "fm/dist/data_parallel.h"
#include "fm/dist/launch.h"
#include "fm/dist/zero.h"
#include "fm/factory.h"
#include "fm/io/atomic_file.h"
#include "fm/io/checkpoint.h"
#include "fm/io/event_writer.h"
#include "fm/io/metrics_log.h"
#include "fm/kernels/core.h"
#include "fm/nn/flat.h"
#include "fm/nn/lora.h"
#include "fm/ops.h"
#include "fm/optim/adamw.h"
#include "fm/optim/clip.h"
#include "fm/optim/ema.h"
#include "fm/optim/loss_scaler.h"
#include "fm/runtime.h"
#include "fm/train/finetune.h"
#include "fm/train/progress.h"
#include "fm/train/recipe.h"
#include "stop_signals.h"

namespace fm::train {
namespace fs = std::filesystem;
namespace {

void write_text_atomic(const std::string& path, const std::string& text) {
  io::AtomicFile f(path, "save config");
  f.write(text.data(), text.size());
  f.commit();
}

// The mean over ranks of each value (every rank must hold the same keys).
void average_values(dist::Communicator& comm, std::map<std::string, double>& values) {
  if (comm.world_size() == 1) return;
  std::vector<double> v;
  for (const auto& [k, x] : values) v.push_back(x);
  const Tensor n = tensor(std::vector<double>{double(v.size())}, {1});
  comm.all_reduce(n, dist::ReduceOp::average);
  if (n.item<double>() != double(v.size()))
    error("dist: ranks logged different figures (", v.size(), " here, ", n.item<double>(), " on average)");
  if (v.empty()) return;
  const Tensor t = tensor(v, {int64_t(v.size())});
  comm.all_reduce(t, dist::ReduceOp::average);
  const std::vector<double> mean = t.to_vector<double>();
  size_t i = 0;
  for (auto& [k, x] : values) x = mean[i++];
}

// A task built from a config, its model on the run's device with flat
// parameters, and its optimizer: what training, benchmarks and evaluation share.
struct Setup {
  Config config;
  RunContext ctx;
  std::unique_ptr<Task> task;
  std::unique_ptr<optim::AdamW> optimizer;
  std::shared_ptr<dist::Communicator> comm;
  std::unique_ptr<dist::GradientReducer> reducer;  // plain data parallelism with more than one rank
  std::unique_ptr<dist::Zero1> zero;               // train.zero_stage = 1: sharded AdamW instead of `optimizer`
  nn::FlatParameters flat;
  FinetunePlan plan;        // finetune.*: active when the run starts from another's weights
  FinetuneSummary adapted;  // what the plan trains

  // adapt = false: a fine-tuning run's base and adapters are left to
  // load_run_weights (evaluation of a finished run).
  Setup(Config c, bool open_data, bool adapt = true) : config(std::move(c)), comm(dist::world()) {
    if (config.get_int("runtime.threads") > 0) set_num_threads(int(config.get_int("runtime.threads")));
    // runtime.device = cuda on several ranks: each rank takes cuda:LOCAL_RANK.
    std::string device = config.get_string("runtime.device");
    if (device == "cuda" && comm->world_size() > 1) device = "cuda:" + std::to_string(dist::detect_launch().local_rank);
    ctx.device = parse_device(device);
    // GPU ranks talk through NCCL (MPI only finds the ranks); CPU ranks through MPI.
    if (ctx.device.is_cuda() && comm->world_size() > 1 && dist::nccl_available()) comm = dist::nccl_world(ctx.device.index);
    comm->timeout_s = config.get_double("runtime.dist_timeout");
    ctx.rank = comm->rank();
    ctx.world_size = comm->world_size();
    ctx.comm = comm.get();
    ctx.config = &config;
    ctx.precision = parse_precision(config.get_string("runtime.precision"), "runtime.precision");
    ctx.open_data = open_data;
    task = find_task(config.get_string("task.kind")).make(config);
    task->build(ctx);
    nn::Module& m = task->model();
    plan = finetune_plan(config);
    if (plan.active() && adapt) {
      if (fs::is_directory(fs::path(plan.from) / "checkpoints")) check_same_shape(config, plan.from);
      load_base_weights(plan.from, m);
      Generator gen(uint64_t(config.get_int("train.seed")) ^ 0x4c6f5241ull);  // the adapters' own stream
      adapted = apply_finetune(m, plan, &gen);
    }
    m.to(ctx.device);  // initialised on the CPU (the same numbers everywhere), then moved
    flat = nn::flatten_parameters(m);
    const int64_t zero_stage = config.get_int("train.zero_stage");
    if (zero_stage != 0 && zero_stage != 1) error("config: key 'train.zero_stage' must be 0 or 1, got ", zero_stage);
    if (comm->world_size() > 1) {
      // Rank 0's initial weights everywhere (the same seed makes them equal
      // already; this makes it so whatever a task draws), then the reducer.
      dist::broadcast_parameters(*comm, flat);
      const double mb = config.get_double("runtime.bucket_mb");
      if (mb <= 0) error("config: key 'runtime.bucket_mb' must be positive, got ", mb);
      if (zero_stage == 0) reducer = std::make_unique<dist::GradientReducer>(comm, flat, int64_t(mb * 1024 * 1024));
    }
    optim::AdamWOptions o;
    o.lr = config.get_double("train.lr");
    o.beta1 = config.get_double("train.beta1");
    o.beta2 = config.get_double("train.beta2");
    o.weight_decay = config.get_double("train.weight_decay");
    if (zero_stage == 1) zero = std::make_unique<dist::Zero1>(comm, flat, o);
    else optimizer = std::make_unique<optim::AdamW>(m, o);
  }

  // The optimizer's calls, whichever it is.
  void set_lr(double lr) { zero ? zero->set_lr(lr) : optimizer->set_lr(lr); }
  void zero_grad() { zero ? zero->zero_grad() : optimizer->zero_grad(); }
  // After the step's backward passes: gradients reduced across ranks,
  // multiplied by grad_scale (a loss scaler's 1 / scale), clipped (clip > 0),
  // the update. Returns the gradient's norm; when it is not finite, or
  // `update` is false, the weights and the optimizer state stay as they were.
  double step(double clip, double grad_scale = 1.0, bool update = true) {
    if (zero) return update ? zero->step(clip, grad_scale) : NAN;
    if (reducer) reducer->finish();
    if (!update) return NAN;
    if (grad_scale != 1.0)
      for (const nn::FlatGroup& g : flat.groups)
        kernels::unary(g.grad.device(), UnaryOp::mul_scalar, g.grad, g.grad, grad_scale, 0.0);
    const double norm = optim::clip_grad_norm(task->model().parameters(), clip > 0 ? clip : INFINITY);
    if (std::isfinite(norm)) optimizer->step();
    return norm;
  }
  std::map<std::string, Tensor> optimizer_state() const { return zero ? zero->state_dict() : optimizer->state_dict(); }
  void load_optimizer_state(const std::map<std::string, Tensor>& s) {
    zero ? zero->load_state_dict(s) : optimizer->load_state_dict(s);
  }

  // One micro-batch's forward under autocast; backward is the caller's.
  StepOutput forward(bool bench) {
    AutocastGuard ac(ctx.precision);
    return bench ? task->bench_step() : task->train_step();
  }

  // Evaluation figures in eval mode under no_grad; the model returns to training mode.
  std::map<std::string, double> evaluate() {
    NoGradGuard ng;
    AutocastGuard ac(ctx.precision);
    task->model().eval();
    auto out = task->evaluate();
    task->model().train();
    average_values(*comm, out);
    return out;
  }
};

// The EMA weights a train state holds ("ema.<param>"), by parameter name.
nn::StateDict ema_weights(const io::TrainState& ts) {
  nn::StateDict out;
  for (const auto& [name, t] : ts.tensors)
    if (name.rfind("ema.", 0) == 0) out[name.substr(4)] = t;
  return out;
}

std::string format_values(const std::map<std::string, double>& values) {
  std::string s;
  char buf[96];
  for (const auto& [k, v] : values) {
    std::snprintf(buf, sizeof buf, "%s%s %.4f", s.empty() ? "" : " | ", k.c_str(), v);
    s += buf;
  }
  return s;
}

}  // namespace

struct Trainer::Impl {
  std::optional<Setup> setup;
  std::string dir;
  int64_t step = 0;
  std::unique_ptr<optim::EMA> ema;
  std::unique_ptr<optim::LossScaler> scaler;  // runtime.precision = f16
  double peak_gflops = 0;  // MFU's denominator
  int stopped_by = 0;      // the signal that stopped run(), or 0
};

Trainer::Trainer(Config config, bool resume) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.dir = config.get_string("run.dir");
  const fs::path dir(s.dir);
  const bool exists = fs::exists(dir / "config.ini");
  if (exists && !resume)
    error("run directory ", s.dir, " already holds a run (config.ini); pass --resume to continue it or set another run.dir");
  if (exists) check_same_shape(config, s.dir);
  parse_target(config.get_string("train.target"));  // a malformed target fails now, not at fm eval
  // The peak is measured before the task opens its data: loader threads
  // running beside the GEMM would make it read low (and MFU high).
  s.peak_gflops = config.get_double("runtime.peak_gflops");
  if (s.peak_gflops <= 0) {
    if (config.get_int("runtime.threads") > 0) set_num_threads(int(config.get_int("runtime.threads")));
    s.peak_gflops = measure_peak_gflops(parse_device(config.get_string("runtime.device")),
                                        parse_precision(config.get_string("runtime.precision"), "runtime.precision")
                                            .value_or(DType::f32));
  }
  s.setup.emplace(std::move(config), true);
  Setup& st = *s.setup;
  const double ema_decay = st.config.get_double("train.ema_decay");
  if (ema_decay > 0) s.ema = std::make_unique<optim::EMA>(st.task->model(), ema_decay);
  if (st.ctx.precision == DType::f16) s.scaler = std::make_unique<optim::LossScaler>();
  if (!resume) return;
  std::vector<std::string> skipped;
  const std::string latest = io::latest_checkpoint((dir / "checkpoints").string(), &skipped);
  for (const auto& m : skipped) std::fprintf(stderr, "fm train: skipping a broken checkpoint: %s\n", m.c_str());
  if (latest.empty()) {
    // Broken checkpoints only: refuse. None yet (stopped before its first
    // save): start again from step 0, so a preempted job's command works as is.
    if (exists && !skipped.empty()) error("--resume: ", (dir / "checkpoints").string(), " holds no valid checkpoint");
    if (exists) std::printf("fm train: --resume: %s has no checkpoint yet; starting from step 0\n", s.dir.c_str());
    return;
  }
  io::TrainState ts = io::load_checkpoint(latest, st.task->model());
  st.load_optimizer_state(ts.optimizer);
  s.step = ts.step;
  default_generator().set_state(ts.rng);
  TaskState task_state;
  task_state.positions = ts.positions;
  task_state.positions["train"] = ts.data_position;
  task_state.rngs = ts.rngs;
  for (const auto& [name, t] : ts.tensors)
    if (name.rfind("task.", 0) == 0) task_state.tensors[name.substr(5)] = t;
  st.task->load_state(task_state);
  if (s.ema) {
    const nn::StateDict shadow = ema_weights(ts);
    if (shadow.empty()) error("--resume: ", latest, " holds no EMA weights but train.ema_decay is set");
    s.ema->load_state_dict(shadow);
  }
  if (s.scaler && ts.tensors.count("scaler.scale"))  // absent: the run was not f16 until now
    s.scaler->load_state_dict({{"scale", ts.tensors.at("scaler.scale")}, {"good_steps", ts.tensors.at("scaler.good_steps")}});
  std::printf("resumed from %s (step %lld)\n", latest.c_str(), (long long)s.step);
}

Trainer::~Trainer() = default;
Task& Trainer::task() { return *impl_->setup->task; }
int64_t Trainer::step() const { return impl_->step; }
int Trainer::stopped_by() const { return impl_->stopped_by; }

void Trainer::run() {
  Impl& s = *impl_;
  Setup& st = *s.setup;
  const Config& cfg = st.config;
  Task& task = *st.task;
  nn::Module& model = task.model();
  dist::Communicator& comm = *st.comm;
  // Rank 0 alone writes the run directory and logs; every rank has checked
  // it (the constructor) before rank 0 writes config.ini.
  const bool lead = comm.rank() == 0;
  // A schedule the config cannot make fails before anything is written, so a corrected retry needs no --resume.
  const optim::LRSchedule schedule = lr_schedule(cfg);
  comm.barrier();
  const fs::path dir(s.dir), ckpt_dir = dir / "checkpoints";
  std::optional<io::MetricsLog> metrics;
  std::optional<io::EventWriter> events;
  if (lead) {
    fs::create_directories(ckpt_dir);
    fs::create_directories(dir / "samples");
    write_text_atomic((dir / "config.ini").string(), cfg.to_ini());
    metrics.emplace((dir / "metrics.jsonl").string(), s.step + 1);
    events.emplace(s.dir);
  }

  const int64_t accum = cfg.get_int("train.grad_accum"), max_steps = cfg.get_int("train.max_steps");
  const double params = double(model.num_parameters());
  const bool count_tokens = task.tokens_per_sample() > 0;
  // The progress line counts the world's tokens (or samples) against the world's peak.
  const int64_t units_per_micro =
      task.batch_samples() * (count_tokens ? task.tokens_per_sample() : 1) * comm.world_size();
  const double flops_per_unit = count_tokens ? task.flops_per_sample() / double(task.tokens_per_sample())
                                             : task.flops_per_sample();
  const double peak = s.peak_gflops * comm.world_size();
  const std::string unit = count_tokens ? "tok" : task.sample_unit();
  Progress progress(max_steps, s.step, unit, flops_per_unit, peak);
  if (lead)
    std::printf("fm train: %s | %s | %.2fM parameters | %s %s | %d threads%s | peak %.0f GFLOP/s | steps %lld..%lld\n",
                s.dir.c_str(), cfg.get_string("task.kind").c_str(), params / 1e6, st.ctx.device.str().c_str(),
                cfg.get_string("runtime.precision").c_str(), get_num_threads(),
                comm.world_size() > 1 ? (" x " + std::to_string(comm.world_size()) + " ranks (" + comm.backend() + ")").c_str() : "",
                peak, (long long)s.step, (long long)max_steps);
  if (lead && st.plan.active())
    std::printf("fm train: fine-tuning %s | %s%s | trains %lld of %lld parameters (%.2f%%)\n", st.plan.from.c_str(),
                st.plan.method.c_str(),
                st.plan.method == "lora" ? (" on " + std::to_string(st.adapted.adapted.size()) + " layers, rank " +
                                            std::to_string(st.plan.lora.rank)).c_str() : "",
                (long long)st.adapted.trainable, (long long)st.adapted.total,
                100.0 * double(st.adapted.trainable) / double(std::max<int64_t>(1, st.adapted.total)));

  const int64_t eval_every = cfg.get_int("train.eval_every"), save_every = cfg.get_int("train.save_every");
  const int64_t log_every = std::max<int64_t>(1, cfg.get_int("train.log_every"));
  const int64_t sample_every = cfg.get_int("train.sample_every");
  const bool ema_warmup = cfg.get_bool("train.ema_warmup");
  const int64_t stop_after = cfg.get_int("run.stop_after");
  const double clip = cfg.get_double("train.grad_clip");
  const int64_t start = s.step;
  int64_t units_since_log = 0;
  auto save = [&] {
    // Every rank holds the same weights; ZeRO's optimizer state is gathered
    // from all ranks (a collective), then rank 0 alone writes.
    std::map<std::string, Tensor> optimizer_state = st.optimizer_state();
    if (!lead) return;
    // Not recreated: a run directory removed under a run is an error, not a fresh start.
    if (!fs::is_directory(ckpt_dir)) error("fm train: ", ckpt_dir.string(), " is gone (the run directory was removed?)");
    io::TrainState ts;
    ts.step = s.step;
    ts.rng = default_generator().state();
    TaskState task_state = task.state();
    ts.data_position = task_state.positions["train"];
    task_state.positions.erase("train");
    ts.positions = task_state.positions;
    ts.rngs = task_state.rngs;
    for (const auto& [name, t] : task_state.tensors) ts.tensors["task." + name] = t;  // apart from "ema."
    if (s.ema)
      for (const auto& [name, t] : s.ema->state_dict()) ts.tensors["ema." + name] = t;
    if (s.scaler)
      for (const auto& [name, t] : s.scaler->state_dict()) ts.tensors["scaler." + name] = t;
    ts.config = cfg.to_ini();
    ts.optimizer = std::move(optimizer_state);
    if (st.plan.active()) io::save_checkpoint(ckpt_dir.string(), trainable_state(model), ts);  // the base stays in finetune.from
    else io::save_checkpoint(ckpt_dir.string(), model, ts);
    metrics->flush();
    events->flush();
  };

  const std::string nonfinite = cfg.get_string("train.nonfinite");
  if (nonfinite != "stop" && nonfinite != "skip")
    error("config: key 'train.nonfinite' must be 'stop' or 'skip', got '", nonfinite, "'");
  int64_t skipped = 0, skipped_in_a_row = 0;
  const int64_t max_in_a_row = 50;  // a run that cannot take a step any more has diverged
  std::optional<StopSignals> signals;
  if (cfg.get_bool("run.handle_signals")) signals.emplace();

  model.train();
  while (s.step < max_steps && (stop_after <= 0 || s.step - start < stop_after)) {
    const double lr = schedule.at(s.step);
    st.set_lr(lr);
    st.zero_grad();
    const double loss_scale = s.scaler ? s.scaler->scale() : 1.0;
    double loss_sum = 0;
    std::map<std::string, double> step_metrics;
    for (int64_t micro = 0; micro < accum; ++micro) {
      StepOutput out = st.forward(false);
      loss_sum += out.loss.item();
      for (const auto& [k, v] : out.metrics) step_metrics[k] += v / double(accum);
      if (st.reducer) st.reducer->set_sync(micro == accum - 1);  // gradients reduced once, on the last
      const double factor = loss_scale / double(accum);
      (factor != 1.0 ? out.loss * factor : out.loss).backward();
    }
    step_metrics["train_loss"] = loss_sum / double(accum);
    // A signal on any rank stops every rank after this step: the flag rides
    // on the average every rank takes anyway.
    step_metrics["stop_signal"] = signals ? double(signals->pending()) : 0.0;
    average_values(comm, step_metrics);  // the world's batch: what one rank with all of it would log
    const double loss = step_metrics["train_loss"];
    const int stop_signal = step_metrics["stop_signal"] <= 0 ? 0 : signals && signals->pending() ? signals->pending() : SIGTERM;
    step_metrics.erase("train_loss");
    step_metrics.erase("stop_signal");
    if (!std::isfinite(loss) && nonfinite == "stop")
      error("training diverged at step ", s.step + 1, ": loss is ", loss,
            " (train.nonfinite = skip skips such steps; the last checkpoint is kept)");
    const double grad_norm = st.step(clip, 1.0 / loss_scale, std::isfinite(loss));
    // Skipped: a non-finite loss or gradient. Under f16 an overflowing
    // gradient is the loss scaler's business (it backs off), not divergence.
    const bool skip = !std::isfinite(loss) || !std::isfinite(grad_norm);
    if (s.scaler && std::isfinite(loss)) s.scaler->update(skip);
    if (skip && !s.scaler && nonfinite == "stop")
      error("training diverged at step ", s.step + 1, ": the gradient norm is ", grad_norm,
            " (train.nonfinite = skip skips such steps; the last checkpoint is kept)");
    if (skip) {
      ++skipped;
      if (++skipped_in_a_row >= max_in_a_row)
        error("training diverged at step ", s.step + 1, ": ", skipped_in_a_row,
              " steps in a row had a non-finite loss or gradient");
      if (lead && !s.scaler)
        std::printf("fm train: step %lld skipped: loss %g, gradient norm %g\n", (long long)(s.step + 1), loss, grad_norm);
    } else {
      skipped_in_a_row = 0;
      if (s.ema) {
        if (ema_warmup) s.ema->update(model, s.step);
        else s.ema->update(model);
      }
    }
    ++s.step;
    units_since_log += units_per_micro * accum;

    std::map<std::string, double> values = step_metrics;
    values["train_loss"] = loss;
    values["lr"] = lr;
    if (clip > 0) values["grad_norm"] = grad_norm;
    if (s.scaler) values["loss_scale"] = loss_scale;
    if (skipped > 0) values["skipped_steps"] = double(skipped);
    if (lead && (s.step % log_every == 0 || s.step == max_steps)) {
      std::printf("%s\n", progress.line(s.step, loss, lr, units_since_log).c_str());
      std::fflush(stdout);
      values[count_tokens ? "tokens_per_s" : "samples_per_s"] = progress.units_per_s();
      units_since_log = 0;
    }
    const bool eval_now = (eval_every > 0 && s.step % eval_every == 0) || s.step == max_steps;
    // Evaluations and samples see the EMA weights when the run keeps them.
    const bool samples_now = sample_every > 0 ? s.step % sample_every == 0 : eval_now;
    if (s.ema && (eval_now || samples_now)) s.ema->swap(model);
    if (eval_now) {
      const auto figures = st.evaluate();
      values.insert(figures.begin(), figures.end());
      if (lead) std::printf("step %6lld | %s\n", (long long)s.step, format_values(figures).c_str());
    }
    if (lead) {
      for (const auto& [k, v] : values) events->add_scalar(k, v, s.step);
      metrics->log(s.step, values);
    }
    if (lead && samples_now) {
      NoGradGuard ng;
      model.eval();
      SampleSink sink((dir / "samples").string(), &*events, s.step);
      task.write_samples(s.step, sink);
      model.train();
    }
    if (s.ema && (eval_now || samples_now)) s.ema->swap(model);
    const bool saved = (save_every > 0 && s.step % save_every == 0) || s.step == max_steps;
    if (saved) save();
    if (stop_signal != 0) {
      if (!saved) save();
      s.stopped_by = stop_signal;
      if (lead)
        std::printf("fm train: stopped by %s at step %lld; checkpoint saved\n", stop_signal == SIGINT ? "SIGINT" : "SIGTERM",
                    (long long)s.step);
      return;
    }
  }
  if (s.step < max_steps) save();  // stopped early (run.stop_after): resumable from here
  if (lead) std::printf("fm train: done at step %lld; run directory %s\n", (long long)s.step, s.dir.c_str());
}

BenchResult bench_train(Config config, int64_t steps) {
  if (steps < 1) error("bench: --steps must be at least 1");
  Setup st(std::move(config), false);
  Task& task = *st.task;
  task.model().train();
  auto step = [&] {
    st.zero_grad();
    StepOutput out = st.forward(true);
    out.loss.backward();
    st.step(0);
    out.loss.item();  // waits for the device
  };
  step();  // warm-up: allocator caches filled
  std::vector<double> times;
  for (int64_t i = 0; i < steps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::fprintf(stderr, "step %lld/%lld: %.3f s\n", (long long)(i + 1), (long long)steps, times.back());
  }
  std::sort(times.begin(), times.end());
  BenchResult r;
  r.step_s = times[times.size() / 2];
  r.samples_per_s = double(task.batch_samples()) / r.step_s;
  r.tokens_per_s = r.samples_per_s * double(task.tokens_per_sample());
  r.gflops = r.samples_per_s * task.flops_per_sample() / 1e9;
  r.params = double(task.model().num_parameters());
  r.unit = task.tokens_per_sample() > 0 ? "tok" : task.sample_unit();
  return r;
}

int64_t load_run_weights(const std::string& run_dir, nn::Module& model) {
  const std::string latest = io::latest_checkpoint((fs::path(run_dir) / "checkpoints").string());
  if (latest.empty()) error(run_dir, " has no valid checkpoint yet");
  // A fine-tuning run: its base first (itself perhaps a fine-tuning run), then its adapters on top.
  const FinetunePlan plan = finetune_plan(load_run_config(run_dir));
  if (plan.active()) {
    static thread_local int depth = 0;
    if (depth > 16) error(run_dir, ": finetune.from chains more than 16 runs (a cycle?)");
    struct Nested {
      Nested() { ++depth; }
      ~Nested() { --depth; }
    } nested;
    load_base_weights(plan.from, model);
    Generator gen(0);  // the adapters' initial values are overwritten by the checkpoint
    apply_finetune(model, plan, &gen);
  }
  const io::TrainState ts = io::load_checkpoint(latest, model);
  const nn::StateDict ema = ema_weights(ts);
  if (!ema.empty()) model.load_state_dict(ema, false);  // parameters only: buffers stay
  if (plan.active()) {
    // A plain model again for whoever loads it: adapters merged, nothing frozen.
    nn::merge_and_unload_lora(model);
    for (const nn::NamedTensor& p : model.named_parameters()) Tensor(p.tensor).requires_grad_(true);
  }
  return ts.step;
}

std::map<std::string, double> evaluate_run(const std::string& run_dir, const std::vector<std::string>& overrides) {
  Setup st(load_run_config(run_dir, overrides), true, false);
  const int64_t step = load_run_weights(run_dir, st.task->model());
  auto out = st.evaluate();
  out["step"] = double(step);
  return out;
}

}  // namespace fm::train

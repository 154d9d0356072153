// fm train CONFIG.ini [--resume] [--section.key=value ...]
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "fm/fm.h"
#include "fm/io/atomic_file.h"
#include "fm/io/checkpoint.h"
#include "fm/io/event_writer.h"
#include "fm/io/metrics_log.h"
#include "fm/optim/clip.h"
#include "fm/optim/schedule.h"
#include "progress.h"
#include "sampling.h"
#include "text_recipe.h"
#include "text_run.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

void write_text_atomic(const std::string& path, const std::string& text) {
  io::AtomicFile f(path, "fm train");
  f.write(text.data(), text.size());
  f.commit();
}

double eval_loss(const TextRun& run, data::TokenWindows& val, int64_t batches) {
  NoGradGuard ng;
  AutocastGuard ac(run.precision);
  double total = 0;
  for (int64_t i = 0; i < batches; ++i) {
    const data::Batch b = val.sequential(i);
    total += cross_entropy(run.model->forward(b.inputs.to(run.device)).flatten(0, 1), b.targets.to(run.device).flatten())
                 .item();
  }
  return total / double(batches);
}

std::string sample_text(const TextRun& run, uint64_t seed) {
  const auto& tok = *run.tokenizer;
  std::vector<int32_t> prompt = tok.encode("\n");
  Generator gen(seed);
  SamplingOptions o;
  o.max_new_tokens = run.config.get_int("train.sample_tokens");
  o.temperature = 0.8;
  o.top_k = 40;
  run.model->eval();
  const std::string text = tok.decode(sample(*run.model, prompt, o, gen));
  run.model->train();
  return text;
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: fm train CONFIG.ini [--resume] [--section.key=value ...]\n\n"
                "Trains a GPT on token shards as the recipe says. --resume continues the run in run.dir\n"
                "from its newest valid checkpoint. Keys:\n%s",
                text_recipe_config().help().c_str());
    return 0;
  }
  bool resume = false;
  std::vector<std::string> overrides;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--resume") resume = true;
    else overrides.push_back(args[i]);
  }
  TextRun run;
  run.config = load_text_config(args[0], overrides);
  const auto& cfg = run.config;
  if (cfg.get_int("runtime.threads") > 0) set_num_threads(int(cfg.get_int("runtime.threads")));
  run.dir = cfg.get_string("run.dir");
  const fs::path dir(run.dir), ckpt_dir = dir / "checkpoints";
  const bool exists = fs::exists(dir / "config.ini");
  if (exists && !resume)
    error("run directory ", run.dir, " already holds a run (config.ini); pass --resume to continue it or set another run.dir");
  if (exists) check_same_shape(cfg, run.dir);
  load_tokenizer(run);
  build_model(run);

  const int64_t B = cfg.get_int("train.batch_size"), T = cfg.get_int("model.block_size");
  const int64_t accum = cfg.get_int("train.grad_accum"), max_steps = cfg.get_int("train.max_steps");
  const int64_t V = cfg.get_int("model.vocab_size");
  const uint64_t seed = uint64_t(cfg.get_int("train.seed"));
  data::TokenWindowsOptions wo;
  wo.batch_size = B;
  wo.seq_len = T;
  wo.seed = seed;
  wo.vocab_size = V;
  const std::string val_source = cfg.get_string("data.val").empty() ? cfg.get_string("data.train") : cfg.get_string("data.val");
  data::TokenWindows train_data(cfg.get_string("data.train"), wo);
  data::TokenWindows val_data(val_source, wo);

  if (resume) {
    std::vector<std::string> skipped;
    const std::string latest = io::latest_checkpoint(ckpt_dir.string(), &skipped);
    for (const auto& s : skipped) std::fprintf(stderr, "fm train: skipping a broken checkpoint: %s\n", s.c_str());
    if (latest.empty()) {
      if (exists) error("--resume: ", ckpt_dir.string(), " holds no valid checkpoint");
    } else {
      io::TrainState st = io::load_checkpoint(latest, *run.model);
      run.optimizer->load_state_dict(st.optimizer);
      run.step = st.step;
      default_generator().set_state(st.rng);
      train_data.set_position(st.data_position);
      std::printf("resumed from %s (step %lld)\n", latest.c_str(), (long long)run.step);
    }
  }
  fs::create_directories(ckpt_dir);
  fs::create_directories(dir / "samples");
  write_text_atomic((dir / "config.ini").string(), cfg.to_ini());
  io::MetricsLog metrics((dir / "metrics.jsonl").string(), run.step + 1);
  io::EventWriter events(run.dir);

  const optim::LRSchedule schedule = lr_schedule(cfg);
  const double params = double(run.model->num_parameters());
  double peak = cfg.get_double("runtime.peak_gflops");
  if (peak <= 0) peak = measure_peak_gflops(run.device, run.precision.value_or(DType::f32));
  Progress progress(max_steps, run.step, gpt_flops_per_token(params, cfg.get_int("model.n_layer"), T, cfg.get_int("model.d_model")),
                    peak);
  std::printf("fm train: %s | %.2fM parameters | %s %s | %d threads | peak %.0f GFLOP/s | steps %lld..%lld\n",
              run.dir.c_str(), params / 1e6, run.device.str().c_str(), cfg.get_string("runtime.precision").c_str(),
              get_num_threads(), peak, (long long)run.step, (long long)max_steps);

  const int64_t eval_every = cfg.get_int("train.eval_every"), save_every = cfg.get_int("train.save_every");
  const int64_t log_every = std::max<int64_t>(1, cfg.get_int("train.log_every"));
  const int64_t sample_every = cfg.get_int("train.sample_every");
  const int64_t stop_after = cfg.get_int("run.stop_after");
  const double clip = cfg.get_double("train.grad_clip");
  const int64_t start = run.step;
  int64_t tokens_since_log = 0;
  auto save = [&] {
    io::TrainState st;
    st.step = run.step;
    st.rng = default_generator().state();
    st.data_position = train_data.position();
    st.config = cfg.to_ini();
    st.optimizer = run.optimizer->state_dict();
    io::save_checkpoint(ckpt_dir.string(), *run.model, st);
    metrics.flush();
    events.flush();
  };

  run.model->train();
  while (run.step < max_steps && (stop_after <= 0 || run.step - start < stop_after)) {
    const double lr = schedule.at(run.step);
    run.optimizer->set_lr(lr);
    run.optimizer->zero_grad();
    double loss_sum = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      const data::Batch b = train_data.next();
      Tensor loss;
      {
        AutocastGuard ac(run.precision);
        loss = cross_entropy(run.model->forward(b.inputs.to(run.device)).flatten(0, 1),
                             b.targets.to(run.device).flatten());
      }
      loss_sum += loss.item();
      (accum > 1 ? loss / double(accum) : loss).backward();
    }
    const double loss = loss_sum / double(accum);
    if (!std::isfinite(loss)) error("training diverged at step ", run.step + 1, ": loss is ", loss);
    const double grad_norm = clip > 0 ? optim::clip_grad_norm(run.model->parameters(), clip) : NAN;
    run.optimizer->step();
    ++run.step;
    tokens_since_log += B * T * accum;

    std::map<std::string, double> values{{"train_loss", loss}, {"lr", lr}};
    if (clip > 0) values["grad_norm"] = grad_norm;
    if (run.step % log_every == 0 || run.step == max_steps) {
      std::printf("%s\n", progress.line(run.step, loss, lr, tokens_since_log).c_str());
      std::fflush(stdout);
      values["tokens_per_s"] = progress.tokens_per_s();
      tokens_since_log = 0;
    }
    const bool eval_now = (eval_every > 0 && run.step % eval_every == 0) || run.step == max_steps;
    if (eval_now) {
      run.model->eval();
      const double val = eval_loss(run, val_data, cfg.get_int("train.eval_steps"));
      run.model->train();
      values["val_loss"] = val;
      std::printf("step %6lld | val loss %.4f\n", (long long)run.step, val);
    }
    for (const auto& [k, v] : values) events.add_scalar(k, v, run.step);
    metrics.log(run.step, values);
    const bool sample_now = run.tokenizer && (sample_every > 0 ? run.step % sample_every == 0 : eval_now);
    if (sample_now) {
      const std::string text = sample_text(run, seed + uint64_t(run.step));
      events.add_text("sample", text, run.step);
      write_text_atomic((dir / "samples" / ("step_" + std::to_string(run.step) + ".txt")).string(), text);
    }
    if ((save_every > 0 && run.step % save_every == 0) || run.step == max_steps) save();
  }
  if (run.step < max_steps) save();  // stopped early (run.stop_after): resumable from here
  std::printf("fm train: done at step %lld; run directory %s\n", (long long)run.step, run.dir.c_str());
  return 0;
}

}  // namespace fm::app

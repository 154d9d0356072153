// fm bench train CONFIG.ini [--steps N] [--key=value ...]
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "fm/fm.h"
#include "progress.h"
#include "text_recipe.h"
#include "text_run.h"

namespace fm::app {

int cmd_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "train" || args.size() < 2 || args[1] == "--help") {
    std::printf("usage: fm bench train CONFIG.ini [--steps N] [--key=value ...]\n\n"
                "Times forward + backward + optimizer steps of the recipe's model on random tokens and\n"
                "prints one JSON line last: tokens_per_s, step_s, params, gflops, threads.\n");
    return args.size() >= 2 && args[1] == "--help" ? 0 : 2;
  }
  int64_t steps = 10;
  std::vector<std::string> overrides;
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--steps" && i + 1 < args.size()) steps = std::stoll(args[++i]);
    else if (args[i].rfind("--steps=", 0) == 0) steps = std::stoll(args[i].substr(8));
    else overrides.push_back(args[i]);
  }
  if (steps < 1) error("bench: --steps must be at least 1");
  TextRun run;
  run.config = load_text_config(args[1], overrides);
  if (run.config.get_int("runtime.threads") > 0) set_num_threads(int(run.config.get_int("runtime.threads")));
  build_model(run);
  const int64_t B = run.config.get_int("train.batch_size"), T = run.config.get_int("model.block_size");
  const int64_t V = run.config.get_int("model.vocab_size");
  Tensor ids = randint(0, V, {B, T}).to(run.device), targets = randint(0, V, {B, T}).to(run.device);
  auto step = [&] {
    run.optimizer->zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(run.precision);
      loss = cross_entropy(run.model->forward(ids).flatten(0, 1), targets.flatten());
    }
    loss.backward();
    run.optimizer->step();
    loss.item();  // waits for the device
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
  const double step_s = times[times.size() / 2];
  const double params = double(run.model->num_parameters());
  const double flops = double(B * T) * gpt_flops_per_token(params, run.config.get_int("model.n_layer"), T,
                                                           run.config.get_int("model.d_model"));
  std::printf("{\"tokens_per_s\": %.1f, \"step_s\": %.5f, \"params\": %.0f, \"gflops\": %.2f, \"threads\": %d, "
              "\"device\": \"%s\", \"precision\": \"%s\"}\n",
              double(B * T) / step_s, step_s, params, flops / step_s / 1e9, get_num_threads(), run.device.str().c_str(),
              run.config.get_string("runtime.precision").c_str());
  return 0;
}

}  // namespace fm::app

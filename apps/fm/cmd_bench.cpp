// fm bench train CONFIG.ini [--steps N] [--profile] [--key=value ...]
#include <cstdio>
#include <optional>

#include "commands.h"
#include "fm/profile.h"
#include "fm/runtime.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app {

int cmd_bench(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "train" || args.size() < 2 || args[1] == "--help") {
    std::printf("usage: fm bench train CONFIG.ini [--steps N] [--profile] [--key=value ...]\n\n"
                "Times forward + backward + optimizer steps of the recipe's model on synthetic data of its\n"
                "shapes and prints one JSON line last: tokens_per_s (or samples_per_s), step_s, params,\n"
                "gflops, threads, device, precision. --profile also prints, to stderr, where the steps'\n"
                "kernel time goes (fm::Profile's table, warm-up step included).\n");
    return args.size() >= 2 && args[1] == "--help" ? 0 : 2;
  }
  int64_t steps = 10;
  bool profile = false;
  std::vector<std::string> overrides;
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--profile") profile = true;
    else if (args[i] == "--steps" && i + 1 < args.size()) steps = std::stoll(args[++i]);
    else if (args[i].rfind("--steps=", 0) == 0) steps = std::stoll(args[i].substr(8));
    else overrides.push_back(args[i]);
  }
  train::Config config = train::load_recipe(args[1], overrides);
  const std::string kind = config.get_string("task.kind"), device = config.get_string("runtime.device");
  const std::string precision = config.get_string("runtime.precision");
  std::optional<Profile> prof;
  if (profile) prof.emplace();
  const train::BenchResult r = train::bench_train(std::move(config), steps);
  if (prof) std::fputs(Profile::table(prof->stop()).c_str(), stderr);
  std::printf("{\"kind\": \"%s\", \"tokens_per_s\": %.1f, \"samples_per_s\": %.2f, \"step_s\": %.5f, \"params\": %.0f, "
              "\"gflops\": %.2f, \"threads\": %d, \"device\": \"%s\", \"precision\": \"%s\"}\n",
              kind.c_str(), r.tokens_per_s, r.samples_per_s, r.step_s, r.params, r.gflops, get_num_threads(),
              device.c_str(), precision.c_str());
  return 0;
}

}  // namespace fm::app

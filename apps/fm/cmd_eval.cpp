// fm eval RUN_DIR [--key=value ...]
#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "fm/error.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app {

int cmd_eval(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: fm eval RUN_DIR [--key=value ...]\n\n"
                "Evaluates the newest checkpoint of a run (its EMA weights when it has them) as its kind\n"
                "does during training (validation loss; zero-shot accuracy and retrieval for clip) and\n"
                "prints one JSON object, with the recipe's train.target and whether it is met. Overrides\n"
                "change evaluation keys (e.g. the data).\n");
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> overrides(args.begin() + 1, args.end());
  const auto figures = train::evaluate_run(args[0], overrides);
  nlohmann::json out = figures;
  out["step"] = int64_t(figures.at("step"));
  // The recipe's target beside the figure it names.
  if (const auto target = train::parse_target(train::load_run_config(args[0], overrides).get_string("train.target"))) {
    auto it = figures.find(target->metric);
    if (it == figures.end()) error("eval: train.target names '", target->metric, "', which this run's evaluation does not report");
    out["target"] = target->str();
    out["target_met"] = target->met(it->second);
  }
  out["run"] = args[0];
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace fm::app

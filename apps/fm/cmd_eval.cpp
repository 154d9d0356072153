// fm eval RUN_DIR [--key=value ...]
#include <cstdio>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "fm/train/trainer.h"

namespace fm::app {

int cmd_eval(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: fm eval RUN_DIR [--key=value ...]\n\n"
                "Evaluates the newest checkpoint of a run (its EMA weights when it has them) as its kind\n"
                "does during training (validation loss; zero-shot accuracy and retrieval for clip) and\n"
                "prints one JSON object. Overrides change evaluation keys (e.g. the data).\n");
    return args.empty() ? 2 : 0;
  }
  const std::vector<std::string> overrides(args.begin() + 1, args.end());
  const auto figures = train::evaluate_run(args[0], overrides);
  nlohmann::json out = figures;
  out["step"] = int64_t(figures.at("step"));
  out["run"] = args[0];
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace fm::app

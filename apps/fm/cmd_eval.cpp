// fm eval RUN_DIR [--key=value ...]
// fm eval RUN_DIR --suite SUITE.ini
// fm eval --compare RUN_A RUN_B [--suite NAME]
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "fm/error.h"
#include "fm/strings.h"
#include "fm/train/eval_suite.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app {
namespace {

// The suite both runs have results of: `name`, or the only one they share.
std::string shared_suite(const std::string& a, const std::string& b, const std::string& name) {
  if (!name.empty()) return name;
  std::vector<std::string> shared;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(a) / "eval", ec))
    if (e.path().extension() == ".json" &&
        std::filesystem::exists(std::filesystem::path(b) / "eval" / e.path().filename()))
      shared.push_back(e.path().stem().string());
  if (shared.size() == 1) return shared[0];
  if (shared.empty()) error("eval --compare: ", a, " and ", b, " have no suite results in common (fm eval RUN --suite SUITE.ini)");
  error("eval --compare: the runs share several suites (", join(shared), "); name one with --suite NAME");
}

}  // namespace

int cmd_eval(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: fm eval RUN_DIR [--key=value ...]\n"
                "       fm eval RUN_DIR --suite SUITE.ini\n"
                "       fm eval --compare RUN_A RUN_B [--suite NAME]\n\n"
                "Evaluates the newest checkpoint of a run (its EMA weights when it has them) as its kind\n"
                "does during training (validation loss; zero-shot accuracy and retrieval for clip) and\n"
                "prints one JSON object, with the recipe's train.target and whether it is met. Overrides\n"
                "change evaluation keys (e.g. the data).\n\n"
                "--suite runs each evaluation of a suite file (experiments/suites/) and writes\n"
                "RUN_DIR/eval/NAME.json and NAME.md; --compare prints two runs' results of one suite side\n"
                "by side (Markdown).\n");
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--compare") {
    if (args.size() != 3 && !(args.size() == 5 && args[3] == "--suite"))
      error("eval --compare: usage: fm eval --compare RUN_A RUN_B [--suite NAME]");
    const std::string suite = shared_suite(args[1], args[2], args.size() == 5 ? args[4] : "");
    const auto file = [&](const std::string& run) { return (std::filesystem::path(run) / "eval" / (suite + ".json")).string(); };
    std::printf("%s", train::compare_markdown(train::read_suite_results(file(args[1])), train::read_suite_results(file(args[2]))).c_str());
    return 0;
  }
  if (args.size() >= 2 && args[1] == "--suite") {
    if (args.size() != 3) error("eval --suite: usage: fm eval RUN_DIR --suite SUITE.ini");
    const train::SuiteResults r = train::run_suite(args[0], train::load_suite(args[2]));
    const std::string path = train::write_suite_results(args[0], r);
    std::printf("%s\nwritten: %s\n", train::suite_markdown(r).c_str(), path.c_str());
    return 0;
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

// fm train CONFIG.ini [--resume] [--section.key=value ...]
#include <cstdio>

#include "commands.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app {

int cmd_train(const std::vector<std::string>& args) {
  const bool help = args.empty() || args[0] == "--help" || args[0] == "-h";
  if (help || (args.size() >= 2 && (args[1] == "--help" || args[1] == "-h"))) {
    std::printf("usage: fm train CONFIG.ini [--resume] [--section.key=value ...]\n\n"
                "Trains the model kind the recipe names ([task] kind) as it says. --resume continues\n"
                "the run in run.dir from its newest valid checkpoint.\n");
    // With a recipe, its kind's keys; without, every kind's.
    const std::vector<std::string> kinds = help ? train::task_names() : std::vector{train::recipe_kind(args[0])};
    for (const auto& kind : kinds)
      std::printf("\nkind '%s' (%s), keys:\n%s", kind.c_str(), train::find_task(kind).description.c_str(),
                  train::recipe_config(kind).help().c_str());
    return 0;
  }
  bool resume = false;
  std::vector<std::string> overrides;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--resume") resume = true;
    else overrides.push_back(args[i]);
  }
  train::Trainer trainer(train::load_recipe(args[0], overrides), resume);
  trainer.run();
  return trainer.stopped_by() ? 128 + trainer.stopped_by() : 0;  // the shell's code for a signal
}

}  // namespace fm::app

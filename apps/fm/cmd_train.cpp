// fm train CONFIG.ini [--resume] [--section.key=value ...]
// fm finetune CONFIG.ini --from RUN [--resume] [--section.key=value ...]
#include <cstdio>

#include "commands.h"
#include "fm/error.h"
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

int cmd_finetune(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: fm finetune CONFIG.ini --from RUN_DIR|STEP_DIR|FILE.safetensors [--resume] [--section.key=value ...]\n\n"
                "Trains the recipe's model starting from another run's weights (its EMA weights where kept).\n"
                "The recipe is of the same kind and model shape; its [finetune] section says what trains:\n"
                "  method = full | lora | probe | bitfit, lora_rank, lora_alpha, lora_dropout, lora_targets,\n"
                "  train (name patterns trained besides the method's), freeze (patterns never trained).\n"
                "Checkpoints hold the trained parameters only (LoRA: the adapters); fm generate, caption,\n"
                "eval and export load the base and merge the adapters. `fm train --help` lists all keys.\n");
    return args.empty() ? 2 : 0;
  }
  std::vector<std::string> rest{args[0]};
  bool from = false;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--from" && i + 1 < args.size()) {
      rest.push_back("--finetune.from=" + args[++i]);
      from = true;
    } else if (args[i].rfind("--from=", 0) == 0) {
      rest.push_back("--finetune.from=" + args[i].substr(7));
      from = true;
    } else {
      from |= args[i].rfind("--finetune.from", 0) == 0;
      rest.push_back(args[i]);
    }
  }
  if (!from && train::load_recipe(args[0]).get_string("finetune.from").empty())
    error("finetune: say which weights to start from: --from RUN_DIR (or finetune.from in the recipe)");
  return cmd_train(rest);
}

}  // namespace fm::app

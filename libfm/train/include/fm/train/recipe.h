#pragma once
// Recipes: the config of a run is the trainer's keys plus those its task kind
// declares. The kind comes from `[task] kind = ...` (or --task.kind=...);
// recipes without it are language models (`lm`).
#include <optional>
#include <string>
#include <vector>

#include "fm/device.h"
#include "fm/optim/schedule.h"
#include "fm/train/config.h"

namespace fm::train {

// The keys every run has: task.kind, train.* (loop, optimizer, schedule,
// logs), runtime.* and run.*.
void declare_trainer_keys(Config& c);
// Every key a recipe of `kind` may set.
Config recipe_config(const std::string& kind);
// The kind a recipe names (overrides first), without checking other keys.
std::string recipe_kind(const std::string& path, const std::vector<std::string>& overrides = {});
// Reads a recipe and overrides, checks every key against its kind and fills
// derived keys.
Config load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
// The resolved config a run directory holds (config.ini), with overrides.
Config load_run_config(const std::string& run_dir, const std::vector<std::string>& overrides = {});
// Errors when run_dir's saved config gives a model-shape key another value.
void check_same_shape(const Config& config, const std::string& run_dir);

// A recipe's quality target (train.target), e.g. "zeroshot_top1 >= 0.80":
// a figure evaluate() reports, a comparison (>=, <=, >, <) and a value.
struct Target {
  std::string metric, op;
  double value = 0;
  bool met(double figure) const;
  std::string str() const;
};
// Empty when the recipe sets none; errors name the key.
std::optional<Target> parse_target(const std::string& text);

// runtime.device, checked against the build and the machine (the current
// CUDA device is set to it).
Device parse_device(const std::string& value);
optim::LRSchedule lr_schedule(const Config& c);

}  // namespace fm::train

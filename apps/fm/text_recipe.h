#pragma once
// The keys of a text (GPT) recipe, and the pieces built from them.
#include <string>

#include "fm/nn/gpt.h"
#include "fm/optim/schedule.h"
#include "fm/train/config.h"

namespace fm::app {

// Every key a text recipe may set, with defaults and help.
train::Config text_recipe_config();

nn::GPTOptions gpt_options(const train::Config& c);
optim::LRSchedule lr_schedule(const train::Config& c);

// Keys that fix the model's shape: a run directory made with other values
// cannot be resumed or sampled with this config.
const std::vector<std::string>& model_shape_keys();

}  // namespace fm::app

#pragma once
// Everything of fm::optim in one include.
#include "fm/optim/adamw.h"
#include "fm/optim/clip.h"
#include "fm/optim/ema.h"
#include "fm/optim/optimizer.h"
#include "fm/optim/schedule.h"
#include "fm/optim/sgd.h"

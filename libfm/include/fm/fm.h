#pragma once
// Everything of libfm::core in one include.
#include "fm/allocator.h"
#include "fm/autocast.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/random.h"
#include "fm/runtime.h"
#include "fm/tensor.h"

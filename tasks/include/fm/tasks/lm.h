#pragma once
// The `lm` kind: a GPT trained with next-token loss on llm.c / nanoGPT token
// shards (data.train, data.val), text samples in the logs.
#include "fm/nn/gpt.h"
#include "fm/train/config.h"

namespace fm::tasks {

nn::GPTOptions gpt_options(const train::Config& c);

// FLOPs of one token's forward + backward through a GPT: 6 per parameter plus
// attention's score and value products (as nanoGPT and llm.c count them).
double gpt_flops_per_token(double params, int64_t n_layer, int64_t block_size, int64_t d_model);

}  // namespace fm::tasks

#pragma once
// Autoregressive sampling from a GPT with its KV cache.
#include <cstdint>
#include <vector>

#include "fm/nn/gpt.h"
#include "fm/random.h"

namespace fm::tasks {

struct SamplingOptions {
  int64_t max_new_tokens = 100;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: all tokens
  double top_p = 1.0;        // nucleus: smallest set with probability >= top_p
  int32_t stop_token = -1;   // stop after emitting it (-1: never)
};

// Continues `prompt` (at least one token); returns only the new tokens. The
// context is cropped to the model's block size when it fills up.
std::vector<int32_t> sample(const nn::GPT& model, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                            Generator& gen);

// Picks a token from one row of logits under the options (exposed for tests).
int32_t pick_token(const std::vector<float>& logits, const SamplingOptions& o, Generator& gen);

}  // namespace fm::tasks

#pragma once
// Continuous batching of GPT sampling (fm serve): sequences join and leave
// between steps, and each step extends all of them by one token through one
// shared KV cache. Every sequence gets the tokens sample() gives it alone with
// the same prompt, options and seed: prompts of any length, each with its own
// temperature, top-k, top-p, stop token and random stream.
//
// How ragged rows share one cache: a row's keys and values sit at the right
// end of the cache, left-padded to the longest row; each batched step feeds
// every row's last token at its own position and lets it attend only its own
// key range (the attention op's i32 key ranges, so padded tiles are skipped).
// A new prompt, or a row whose context window has filled up (sample()'s
// restart on the last block_size - 1 tokens), is run alone, as sample() runs
// it, and its cache then joins the shared one.
#include <cstdint>
#include <vector>

#include "fm/nn/gpt.h"
#include "fm/random.h"
#include "fm/tasks/sampling.h"

namespace fm::tasks {

class BatchedSampler {
 public:
  explicit BatchedSampler(const nn::GPT& model);

  // Adds a sequence (a prompt of at least one token, o.max_new_tokens >= 1);
  // its first token comes with the next step(). Returns its id.
  int64_t add(const std::vector<int32_t>& prompt, const SamplingOptions& o, uint64_t seed);
  // Drops a sequence before it has finished (a cancelled request); unknown ids are ignored.
  void remove(int64_t id);
  int64_t size() const { return int64_t(rows_.size()); }

  struct Token {
    int64_t id = 0;     // the sequence
    int32_t token = 0;
    bool last = false;  // its final token (max_new_tokens reached or the stop token): it has left
  };
  // Extends every sequence by one token, in one batched forward for those
  // already in the shared cache.
  std::vector<Token> step();

 private:
  struct Row {
    int64_t id = 0;
    std::vector<int32_t> context;  // what the model sees: the prompt's tail and the tokens so far
    SamplingOptions options;
    Generator gen;
    int64_t emitted = 0;
    bool cached = false;  // in the shared cache, holding all of context but its last token
  };
  std::vector<float> step_cached_rows(int64_t rows);
  std::vector<float> prefill(Row& row);
  void keep_cache_rows(const std::vector<int64_t>& rows);
  void trim_cache();

  const nn::GPT& model_;
  Device device_;
  std::vector<Row> rows_;  // the cached rows first, in the shared cache's row order
  std::vector<nn::KVCache> caches_;
  int64_t next_id_ = 0;
};

}  // namespace fm::tasks

#pragma once
// fm::data::TokenWindows: (B, T + 1) windows of tokens from llm.c / nanoGPT
// shards, as batches of next-token training: inputs [B, T] and targets
// [B, T] (the inputs shifted left by one), both i64 CPU tensors.
//
// Training batches (next(), batch()) are random windows, a pure function of
// (seed, step, rank, world_size): window b of rank r at step s starts at a
// position drawn from Philox counter block (s * world_size + r) * B + b,
// uniformly over every valid start of every shard (so a shard is drawn in
// proportion to its length; a window never spans two shards). Hence:
//   - no thread count, prefetching or restart changes what is drawn;
//   - ranks draw different windows, and the W * B windows of one step over
//     W ranks are exactly those of one rank with batch W * B, so data-parallel
//     training sees the data that the single-rank run with the doubled batch sees;
//   - position() (the number of batches drawn) is all a checkpoint needs:
//     set_position(p) makes the next batch the one a run that never stopped
//     would draw.
// Windows are drawn with replacement; there are no epochs.
//
// Evaluation batches (sequential()) are fixed: consecutive non-overlapping
// B * T blocks of the shards concatenated in order (wrapping at the end), so
// val loss is computed on the same tokens every time.
#include <cstdint>
#include <string>
#include <vector>

#include "fm/data/token_shard.h"
#include "fm/tensor.h"

namespace fm::data {

struct TokenWindowsOptions {
  int64_t batch_size = 8;  // B
  int64_t seq_len = 1024;  // T
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  int64_t vocab_size = 0;  // > 0: every shard's ids are checked against it when opened
};

struct Batch {
  Tensor inputs;   // [B, T] i64
  Tensor targets;  // [B, T] i64: targets[b][t] == token after inputs[b][t]
};

class TokenWindows {
 public:
  // Each source is a shard's path or a glob pattern ("data/train_*.bin",
  // matches in sorted order). A source that matches nothing, or a shard with
  // fewer than seq_len + 1 tokens, is an error naming it.
  TokenWindows(const std::vector<std::string>& sources, const TokenWindowsOptions& options);
  TokenWindows(const std::string& source, const TokenWindowsOptions& options)
      : TokenWindows(std::vector<std::string>{source}, options) {}

  Batch next() { return batch(position_++); }  // the batch of step position(), then advances
  Batch batch(int64_t step) const;             // any step's batch, without moving
  int64_t position() const { return position_; }
  void set_position(int64_t position);

  // Block `index` (any index >= 0; wraps) of the concatenated shards: row b
  // holds tokens [(index * B + b) * T, ... + T) and the targets the next ones.
  // With several ranks, pass index * world_size + rank to split a val set.
  Batch sequential(int64_t index) const;
  // Blocks that cover the concatenated shards once without wrapping.
  int64_t sequential_batches() const { return total_tokens_ / (options_.batch_size * options_.seq_len); }

  const std::vector<TokenShard>& shards() const { return shards_; }
  int64_t total_tokens() const { return total_tokens_; }
  const TokenWindowsOptions& options() const { return options_; }

 private:
  TokenWindowsOptions options_;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> start_ends_;  // running count of valid window starts, one per shard
  std::vector<int64_t> token_ends_;  // running count of tokens, one per shard
  int64_t total_tokens_ = 0;
  int64_t position_ = 0;
};

}  // namespace fm::data

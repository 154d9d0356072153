#pragma once
// prepare_text_shards: text files -> llm.c / nanoGPT token shards (the
// `prepare` step of a text run).
//
// Each input file is one document: read whole, in the given order, encoded,
// followed by `eot_token` (unless it is kNoEotToken). Documents go, in order,
// to two streams of shards in `out_dir` (created if missing):
//   <name>_val_000.bin, <name>_val_001.bin, ...     validation
//   <name>_train_000.bin, <name>_train_001.bin, ... training
// The val stream gets the FIRST round(val_fraction * files) documents (as
// llm.c puts its val shard first); with a single document it gets instead the
// LAST round(val_fraction * tokens) of its tokens. A val_fraction above 0
// always leaves at least one document (or token) to each side; val_fraction 0
// writes no val shard.
//
// Shards hold at most shard_tokens tokens each. All but the last two of a
// stream are full; the last two share what remains evenly, so no shard is a
// tiny tail that a reader of seq_len + 1 windows would reject. Tokens are
// stored as uint16 when they fit (the format llm.c reads), else uint32.
// Memory stays near two shards plus the largest document's tokens.
//
// An unreadable input file is an error naming it (nothing is skipped: a
// silently partial data set is worse than a stopped prepare); missing files
// and directories are caught before anything is written. Every shard is
// written atomically; after success, shards of an earlier run with the same
// name that this run did not rewrite (e.g. <name>_train_007.bin when there
// are now 5) are deleted, so a glob of <name>_train_*.bin reads this run only.
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace fm::data {

constexpr uint32_t kNoEotToken = std::numeric_limits<uint32_t>::max();

struct PrepareStats {
  int64_t files = 0;  // documents read and encoded
  int64_t bytes = 0;  // text bytes read
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<std::string> train_shards;  // paths, in order
  std::vector<std::string> val_shards;
};

using TextEncoder = std::function<std::vector<uint32_t>(std::string_view text)>;

PrepareStats prepare_text_shards(const std::vector<std::string>& input_files, const TextEncoder& encode,
                                 uint32_t eot_token, const std::string& out_dir, const std::string& name,
                                 double val_fraction, int64_t shard_tokens);

}  // namespace fm::data

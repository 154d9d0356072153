#include "fm/data/token_windows.h"

#include <glob.h>

#include <algorithm>

#include "fm/factory.h"
#include "fm/random.h"

namespace fm::data {
namespace {

// Window draws use counter blocks far above those of a Generator with the
// same seed (which start at 0), so the data order shares no random bits with,
// say, weight initialisation.
constexpr uint64_t kWindowStreamOffset = uint64_t(1) << 63;

std::vector<std::string> expand_sources(const std::vector<std::string>& sources) {
  std::vector<std::string> paths;
  for (const std::string& source : sources) {
    glob_t matches{};
    const int rc = ::glob(source.c_str(), 0, nullptr, &matches);
    for (size_t i = 0; rc == 0 && i < matches.gl_pathc; ++i) paths.emplace_back(matches.gl_pathv[i]);
    ::globfree(&matches);
    if (rc == GLOB_NOMATCH) {
      if (source.find_first_of("*?[") == std::string::npos) error("TokenWindows: no such file '", source, "'");
      error("TokenWindows: no files match '", source, "'");
    }
    if (rc != 0) error("TokenWindows: cannot expand '", source, "' (glob error ", rc, ")");
  }
  return paths;
}

// Uniform in [0, n) from 64 random bits by multiply-shift; the bias is below n / 2^64.
int64_t uniform_below(uint64_t bits, int64_t n) {
  return int64_t((static_cast<unsigned __int128>(bits) * uint64_t(n)) >> 64);
}

// The index of the first running count above `x`, and `x` relative to its start.
std::pair<size_t, int64_t> locate(const std::vector<int64_t>& ends, int64_t x) {
  const size_t i = size_t(std::upper_bound(ends.begin(), ends.end(), x) - ends.begin());
  return {i, x - (i == 0 ? 0 : ends[i - 1])};
}

Batch empty_batch(const TokenWindowsOptions& o) {
  return {empty({o.batch_size, o.seq_len}, DType::i64), empty({o.batch_size, o.seq_len}, DType::i64)};
}

}  // namespace

TokenWindows::TokenWindows(const std::vector<std::string>& sources, const TokenWindowsOptions& options)
    : options_(options) {
  const int64_t T = options.seq_len;
  FM_CHECK(options.batch_size >= 1 && T >= 1, "TokenWindows: batch_size ", options.batch_size, " and seq_len ", T,
           " must be at least 1");
  FM_CHECK(options.world_size >= 1 && options.rank >= 0 && options.rank < options.world_size, "TokenWindows: rank ",
           options.rank, " is not in [0, world_size = ", options.world_size, ")");
  FM_CHECK(!sources.empty(), "TokenWindows: no shards given");
  int64_t starts = 0;
  for (const std::string& path : expand_sources(sources)) {
    const TokenShard& shard = shards_.emplace_back(path, options.vocab_size);
    if (shard.size() < T + 1)
      error("TokenWindows: token shard ", path, " has ", shard.size(), " tokens, fewer than seq_len + 1 = ", T + 1);
    starts += shard.size() - T;
    start_ends_.push_back(starts);
    total_tokens_ += shard.size();
    token_ends_.push_back(total_tokens_);
  }
}

void TokenWindows::set_position(int64_t position) {
  FM_CHECK(position >= 0, "TokenWindows::set_position: position ", position, " is negative");
  position_ = position;
}

Batch TokenWindows::batch(int64_t step) const {
  FM_CHECK(step >= 0, "TokenWindows::batch: step ", step, " is negative");
  const int64_t B = options_.batch_size, T = options_.seq_len;
  Batch out = empty_batch(options_);
  int64_t* inputs = out.inputs.data<int64_t>();
  int64_t* targets = out.targets.data<int64_t>();
  const PhiloxState stream{options_.seed, kWindowStreamOffset};
  const uint64_t first_block = (uint64_t(step) * uint64_t(options_.world_size) + uint64_t(options_.rank)) * uint64_t(B);
  for (int64_t b = 0; b < B; ++b) {
    const auto lanes = philox_block(stream, first_block + uint64_t(b));
    const int64_t draw = uniform_below(uint64_t(lanes[0]) << 32 | lanes[1], start_ends_.back());
    const auto [shard, start] = locate(start_ends_, draw);
    shards_[shard].copy_window(start, T, inputs + b * T);
    shards_[shard].copy_window(start + 1, T, targets + b * T);
  }
  return out;
}

Batch TokenWindows::sequential(int64_t index) const {
  FM_CHECK(index >= 0, "TokenWindows::sequential: index ", index, " is negative");
  const int64_t B = options_.batch_size, T = options_.seq_len, N = total_tokens_;
  Batch out = empty_batch(options_);
  // n tokens of the concatenated shards from position p on, wrapping at the end.
  auto copy_wrapped = [&](int64_t p, int64_t n, int64_t* dst) {
    while (n > 0) {
      const auto [shard, offset] = locate(token_ends_, p);
      const int64_t take = std::min(n, shards_[shard].size() - offset);
      shards_[shard].copy_window(offset, take, dst);
      p = (p + take) % N;
      n -= take;
      dst += take;
    }
  };
  const int64_t first = int64_t(static_cast<unsigned __int128>(index) * uint64_t(B * T) % uint64_t(N));
  for (int64_t b = 0; b < B; ++b) {
    const int64_t p = (first + b * T) % N;
    copy_wrapped(p, T, out.inputs.data<int64_t>() + b * T);
    copy_wrapped((p + 1) % N, T, out.targets.data<int64_t>() + b * T);
  }
  return out;
}

}  // namespace fm::data

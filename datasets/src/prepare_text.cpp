#include "fm/data/prepare_text.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "fm/data/token_shard.h"
#include "fm/error.h"

namespace fm::data {
namespace {

namespace fs = std::filesystem;
constexpr const char* kOp = "prepare_text_shards";

std::string read_text(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) error(kOp, ": cannot read ", path, ": ", ec.message());
  std::string text(size, '\0');
  std::ifstream in(path, std::ios::binary);
  if (!in.read(text.data(), std::streamsize(size))) error(kOp, ": cannot read ", path, ": ", std::strerror(errno));
  return text;
}

std::string shard_name(const std::string& name, const char* split, size_t index) {
  char number[24];
  std::snprintf(number, sizeof number, "%03zu", index);
  return name + "_" + split + "_" + number + ".bin";
}

// <name>_<split>_<digits>.bin: a shard of this data set from any run.
bool is_shard_name(const std::string& file, const std::string& name, const char* split) {
  const std::string prefix = name + "_" + split + "_", suffix = ".bin";
  if (file.size() <= prefix.size() + suffix.size() || !file.starts_with(prefix) || !file.ends_with(suffix))
    return false;
  return std::all_of(file.begin() + ptrdiff_t(prefix.size()), file.end() - ptrdiff_t(suffix.size()),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// One split's shards, written as tokens arrive. Up to two shards' worth is
// held back so that finish() can share the remainder between the last two.
class ShardStream {
 public:
  ShardStream(const std::string& out_dir, const std::string& name, const char* split, int64_t shard_tokens)
      : out_dir_(out_dir), name_(name), split_(split), shard_tokens_(shard_tokens) {}

  void append(std::vector<uint32_t>::const_iterator begin, std::vector<uint32_t>::const_iterator end) {
    pending_.insert(pending_.end(), begin, end);
    tokens_ += end - begin;
    while (int64_t(pending_.size()) > 2 * shard_tokens_) write(shard_tokens_);
  }
  void finish() {
    if (int64_t(pending_.size()) > shard_tokens_) write((int64_t(pending_.size()) + 1) / 2);
    if (!pending_.empty()) write(int64_t(pending_.size()));
  }
  int64_t tokens() const { return tokens_; }
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  void write(int64_t n) {
    const std::string path = (fs::path(out_dir_) / shard_name(name_, split_, paths_.size())).string();
    write_token_shard(path, std::vector<uint32_t>(pending_.begin(), pending_.begin() + n));
    pending_.erase(pending_.begin(), pending_.begin() + n);
    paths_.push_back(path);
  }

  std::string out_dir_, name_;
  const char* split_;
  int64_t shard_tokens_;
  std::vector<uint32_t> pending_;
  int64_t tokens_ = 0;
  std::vector<std::string> paths_;
};

// round(fraction * n), but at least 1 and at most n - 1 when fraction > 0
// and n >= 2, so each side gets something.
int64_t val_share(double fraction, int64_t n) {
  if (fraction <= 0 || n < 2) return 0;
  return std::clamp<int64_t>(std::llround(fraction * double(n)), 1, n - 1);
}

void remove_stale_shards(const std::string& out_dir, const std::string& name, const PrepareStats& stats) {
  std::set<std::string> written(stats.train_shards.begin(), stats.train_shards.end());
  written.insert(stats.val_shards.begin(), stats.val_shards.end());
  for (const auto& entry : fs::directory_iterator(out_dir)) {
    const std::string file = entry.path().filename().string();
    if ((is_shard_name(file, name, "train") || is_shard_name(file, name, "val")) &&
        !written.contains(entry.path().string()))
      fs::remove(entry.path());
  }
}

}  // namespace

PrepareStats prepare_text_shards(const std::vector<std::string>& input_files, const TextEncoder& encode,
                                 uint32_t eot_token, const std::string& out_dir, const std::string& name,
                                 double val_fraction, int64_t shard_tokens) {
  FM_CHECK(!input_files.empty(), kOp, ": no input files");
  FM_CHECK(!name.empty(), kOp, ": the data set name is empty");
  FM_CHECK(val_fraction >= 0 && val_fraction < 1, kOp, ": val_fraction ", val_fraction, " is not in [0, 1)");
  FM_CHECK(shard_tokens >= 1 && shard_tokens <= std::numeric_limits<int32_t>::max(), kOp, ": shard_tokens ",
           shard_tokens, " is not in [1, 2^31 - 1]");
  // A missing input is found before any shard is written over an earlier run's.
  for (const std::string& file : input_files) {
    std::error_code unreadable;
    (void)fs::file_size(file, unreadable);
    if (unreadable) error(kOp, ": cannot read ", file, ": ", unreadable.message());
  }
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) error(kOp, ": cannot create ", out_dir, ": ", ec.message());

  const int64_t n_files = int64_t(input_files.size());
  const int64_t val_files = val_share(val_fraction, n_files);
  ShardStream val(out_dir, name, "val", shard_tokens), train(out_dir, name, "train", shard_tokens);
  PrepareStats stats;
  for (int64_t i = 0; i < n_files; ++i) {
    const std::string text = read_text(input_files[size_t(i)]);
    stats.bytes += int64_t(text.size());
    ++stats.files;
    std::vector<uint32_t> tokens = encode(text);
    if (eot_token != kNoEotToken) tokens.push_back(eot_token);
    if (n_files == 1) {
      const auto split = tokens.end() - val_share(val_fraction, int64_t(tokens.size()));
      train.append(tokens.begin(), split);
      val.append(split, tokens.end());
    } else {
      (i < val_files ? val : train).append(tokens.begin(), tokens.end());
    }
  }
  val.finish();
  train.finish();
  stats.train_tokens = train.tokens();
  stats.val_tokens = val.tokens();
  stats.train_shards = train.paths();
  stats.val_shards = val.paths();
  remove_stale_shards(out_dir, name, stats);
  return stats;
}

}  // namespace fm::data

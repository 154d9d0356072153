#pragma once
// Token shards in the llm.c / nanoGPT `.bin` format: a header of 256
// little-endian int32
//   header[0] = 20240520 (magic)
//   header[1] = version: 1 = tokens are uint16, 2 = tokens are uint32
//   header[2] = number of tokens
//   (the rest zero)
// then the tokens, little-endian, nothing after them. Version 1 is what llm.c
// and nanoGPT-style loaders read (GPT-2's 50257 ids fit in uint16); version 2
// is libfm's extension for vocabularies of 65536 ids or more. (llm.c's llama-3
// files, magic 20240801 version 7, are a different format and are not read.)
// A shard holds at most 2^31 - 1 tokens, the most header[2] can count.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fm::data {

constexpr int32_t kTokenShardMagic = 20240520;
constexpr int64_t kTokenShardHeaderInts = 256;
constexpr int64_t kTokenShardHeaderBytes = kTokenShardHeaderInts * 4;

// Writes `tokens` as a shard at `path`, atomically (the old file or the new
// one, never a mix). version 0 chooses: 1 if every token is below 65536,
// else 2. Version 1 with a token >= 65536 is an error.
void write_token_shard(const std::string& path, const std::vector<uint32_t>& tokens, int version = 0);

// A read-only memory map of one shard, validated when opened: the header
// (length, magic, version, a token count that matches the file size) and,
// when vocab_size > 0, every token id (< vocab_size; a one-time O(n) scan).
// Problems throw fm::Error naming the file, e.g.
//   token shard data/train_000.bin: bad magic 12345 (expected 20240520; ...)
// Copies share the mapping.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path, int64_t vocab_size = 0);

  const std::string& path() const { return path_; }
  int version() const { return version_; }
  int64_t size() const { return size_; }  // tokens
  uint32_t operator[](int64_t i) const;   // checks 0 <= i < size()
  // Copies tokens [start, start + n) into out; the range must lie inside the
  // shard. The int32 form throws on an id above INT32_MAX (only possible in
  // version 2 shards).
  void copy_window(int64_t start, int64_t n, int32_t* out) const;
  void copy_window(int64_t start, int64_t n, int64_t* out) const;

 private:
  template <class Out>
  void copy_tokens(int64_t start, int64_t n, Out* out) const;
  void check_range(int64_t start, int64_t n) const;

  std::string path_;
  std::shared_ptr<const void> mapping_;  // keeps the file mapped
  const void* tokens_ = nullptr;         // first token, right after the header
  int version_ = 0;
  int64_t size_ = 0;
};

}  // namespace fm::data

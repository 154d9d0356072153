#pragma once
// fm::text::BpeTokenizer: byte-level BPE, as GPT-2 and tiktoken.
//
// Text is split into pre-tokens by GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (PCRE2, Unicode properties, JIT); each pre-token's bytes are then merged
// pairwise, the adjacent pair whose concatenation has the lowest id first
// (leftmost on ties), exactly as tiktoken's encode_ordinary. Any byte string
// round-trips: decode(encode(x)) == x. Bytes that are not valid UTF-8 are
// split as tiktoken splits U+FFFD (what it turns them into), but their own
// bytes are kept and encoded, never replaced.
//
// An ordinary token's id is its merge rank: every id's bytes are a token, the
// 256 single bytes included. Special tokens ("<|endoftext|>") have ids of
// their own and are recognised by encode() only when allowed.
//
// File format of save()/load(), UTF-8 text, one record per line:
//   libfm-bpe 1
//   special <id> <base64 of the token's bytes>      (zero or more)
//   <base64 of the token's bytes> <id>               (tiktoken's rank format)
// Lines end in '\n'; blank lines are skipped. Ids are below 2^24.
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fm::text {

struct BpeTrainOptions {
  int32_t vocab_size = 32000;               // 256 bytes + merges + special tokens
  std::vector<std::string> special_tokens;  // get the last ids, in this order
  int64_t min_pair_count = 2;               // stop merging when the most frequent pair is rarer
};

class BpeTokenizer {
 public:
  using SpecialTokens = std::map<std::string, int32_t>;  // token text -> id

  // A tiktoken rank file ("<base64 bytes> <rank>" per line, e.g. whisper's
  // gpt2.tiktoken); tiktoken's gpt2 encoding adds {"<|endoftext|>", 50256}.
  static BpeTokenizer from_tiktoken(const std::string& path, const SpecialTokens& special = {});
  // GPT-2's encoder.json and vocab.bpe (tokens spelt in GPT-2's byte-to-unicode
  // alphabet). Merge n must produce token 256 + n, as in GPT-2; encoder.json
  // entries that no merge produces (<|endoftext|>) become special tokens.
  static BpeTokenizer from_gpt2_files(const std::string& encoder_json, const std::string& vocab_bpe);

  // Learns merges from pre-token counts of `corpus` (or of each file's bytes;
  // no pre-token spans two files). Special token strings in the text are not
  // learnt from. Deterministic: ties go to the pair with the smaller ids.
  static BpeTokenizer train(std::string_view corpus, const BpeTrainOptions& options);
  static BpeTokenizer train_files(const std::vector<std::string>& paths, const BpeTrainOptions& options);

  static BpeTokenizer load(const std::string& path);
  void save(const std::string& path) const;  // atomic: old or new file, never a mix

  // With allow_special, special token strings in `text` become their ids;
  // without, they are ordinary text.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const;
  std::string decode(std::span<const int32_t> ids) const;  // raw bytes

  int32_t vocab_size() const;                     // largest id + 1
  std::string_view token_bytes(int32_t id) const;  // special tokens give their text
  const SpecialTokens& special_tokens() const;

 private:
  struct Impl;
  // tokens_by_id[id] holds the bytes of ordinary token `id`, empty for ids
  // that are special or unused. `source` prefixes error messages.
  BpeTokenizer(std::vector<std::string> tokens_by_id, SpecialTokens special, const std::string& source);
  std::shared_ptr<const Impl> impl_;  // immutable: copies are cheap, encode is thread-safe
};

}  // namespace fm::text

// BpeTokenizer::train: byte-level BPE learnt from pre-token counts.
//
// Each distinct pre-token is a word (a symbol sequence, initially its bytes)
// with a count. Pair counts live in a hash map, the best pair comes from a
// max-heap with lazy deletion (an entry whose count is stale is re-queued
// with the current count), and an index pair -> words lets a merge touch
// only the words that contain the pair.
#include <algorithm>
#include <queue>
#include <unordered_map>

#include "bpe_impl.h"
#include "fm/error.h"
#include "read_file.h"
#include "special_split.h"

namespace fm::text {
namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using PieceCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;

// Counts the pre-tokens of texts, leaving out special token strings.
class PieceCounter {
 public:
  explicit PieceCounter(const BpeTrainOptions& options)
      : specials_(options.special_tokens.begin(), options.special_tokens.end()) {
    const auto n_special = static_cast<int64_t>(options.special_tokens.size());
    if (options.vocab_size < 256 + n_special)
      error("BpeTokenizer::train: vocab_size ", options.vocab_size, " is below 256 bytes + ", n_special,
            " special tokens");
    for (size_t k = 0; k < specials_.size(); ++k) {
      if (specials_[k].empty()) error("BpeTokenizer::train: a special token is empty");
      if (std::find(specials_.begin(), specials_.begin() + static_cast<ptrdiff_t>(k), specials_[k]) !=
          specials_.begin() + static_cast<ptrdiff_t>(k))
        error("BpeTokenizer::train: special token ", specials_[k], " is given twice");
    }
  }

  void add(std::string_view text) {
    split_at_specials(
        text, specials_,
        [&](std::string_view part) {
          pretokenizer_.split(part, [&](std::string_view piece) {
            const auto it = counts_.find(piece);
            if (it != counts_.end()) {
              ++it->second;
            } else {
              counts_.emplace(piece, 1);
            }
          });
        },
        [](size_t) {});
  }

  const PieceCounts& counts() const { return counts_; }

 private:
  std::vector<std::string_view> specials_;
  Pretokenizer pretokenizer_;
  PieceCounts counts_;
};

using Pair = uint64_t;  // left id << 32 | right id
Pair pair_of(int32_t a, int32_t b) { return static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

struct Candidate {
  int64_t count;
  Pair pair;
  // Max-heap order: higher count first, then the smaller pair. A total order,
  // so the merges depend on no hash map's iteration order.
  bool operator<(const Candidate& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

class Trainer {
 public:
  explicit Trainer(const PieceCounts& counts) {
    for (int b = 0; b < 256; ++b) add_token(std::string(1, static_cast<char>(b)));
    words_.reserve(counts.size());
    for (const auto& [piece, count] : counts) {
      Word word{{}, count};
      for (const char c : piece) word.symbols.push_back(static_cast<unsigned char>(c));
      words_.push_back(std::move(word));
    }
    for (size_t w = 0; w < words_.size(); ++w) {
      const auto& s = words_[w].symbols;
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const Pair p = pair_of(s[i], s[i + 1]);
        pair_count_[p] += words_[w].count;
        add_to_index(p, static_cast<int32_t>(w));
      }
    }
    for (const auto& [p, count] : pair_count_) heap_.push({count, p});
  }

  // Merges until there are `n_tokens` tokens or no pair occurs min_count times.
  std::vector<std::string> run(size_t n_tokens, int64_t min_count) {
    while (tokens_.size() < n_tokens && !heap_.empty()) {
      const Candidate top = heap_.top();
      heap_.pop();
      const int64_t current = count_of(top.pair);
      if (current != top.count) {  // stale entry
        if (current > 0 && current < top.count) heap_.push({current, top.pair});
        continue;
      }
      if (current < min_count) break;
      merge(top.pair);
    }
    return std::move(tokens_);
  }

 private:
  int32_t add_token(std::string bytes) {
    const auto [it, inserted] = id_of_.emplace(bytes, static_cast<int32_t>(tokens_.size()));
    if (inserted) tokens_.push_back(std::move(bytes));
    return it->second;  // an earlier merge may have made these bytes already
  }

  int64_t count_of(Pair p) const {
    const auto it = pair_count_.find(p);
    return it == pair_count_.end() ? 0 : it->second;
  }

  void add_to_index(Pair p, int32_t w) {
    auto& list = words_with_[p];
    if (list.empty() || list.back() != w) list.push_back(w);
  }

  void merge(Pair pair) {
    const auto a = static_cast<int32_t>(pair >> 32), b = static_cast<int32_t>(pair & 0xFFFFFFFF);
    const int32_t merged = add_token(tokens_[static_cast<size_t>(a)] + tokens_[static_cast<size_t>(b)]);
    std::vector<int32_t> words = std::move(words_with_[pair]);
    words_with_.erase(pair);
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    std::unordered_map<Pair, int64_t> delta;
    for (const int32_t w : words) {
      Word& word = words_[static_cast<size_t>(w)];
      std::vector<int32_t>& s = word.symbols;
      std::vector<int32_t> merged_symbols;
      merged_symbols.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged_symbols.push_back(merged);
          ++i;
        } else {
          merged_symbols.push_back(s[i]);
        }
      }
      if (merged_symbols.size() == s.size()) continue;  // the index entry was stale
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[pair_of(s[i], s[i + 1])] -= word.count;
      for (size_t i = 0; i + 1 < merged_symbols.size(); ++i) {
        const Pair p = pair_of(merged_symbols[i], merged_symbols[i + 1]);
        delta[p] += word.count;
        if (merged_symbols[i] == merged || merged_symbols[i + 1] == merged) add_to_index(p, w);
      }
      s = std::move(merged_symbols);
    }
    for (const auto& [p, d] : delta) {
      if (d == 0) continue;
      const int64_t now = pair_count_[p] += d;
      if (now <= 0) pair_count_.erase(p);
      if (d > 0) heap_.push({now, p});
    }
  }

  std::vector<std::string> tokens_;  // id -> bytes
  std::unordered_map<std::string, int32_t> id_of_;
  std::vector<Word> words_;
  std::unordered_map<Pair, int64_t> pair_count_;
  std::unordered_map<Pair, std::vector<int32_t>> words_with_;  // may hold words that lost the pair
  std::priority_queue<Candidate> heap_;
};

// The learnt tokens by id, and the special tokens numbered after them.
std::pair<std::vector<std::string>, BpeTokenizer::SpecialTokens> learn(const PieceCounts& counts,
                                                                       const BpeTrainOptions& options) {
  const size_t n_ordinary = static_cast<size_t>(options.vocab_size) - options.special_tokens.size();
  std::vector<std::string> tokens = Trainer(counts).run(n_ordinary, options.min_pair_count);
  BpeTokenizer::SpecialTokens special;
  for (const auto& s : options.special_tokens) special.emplace(s, static_cast<int32_t>(tokens.size() + special.size()));
  return {std::move(tokens), std::move(special)};
}

}  // namespace

BpeTokenizer BpeTokenizer::train(std::string_view corpus, const BpeTrainOptions& options) {
  PieceCounter counter(options);
  counter.add(corpus);
  auto [tokens, special] = learn(counter.counts(), options);
  return BpeTokenizer(std::move(tokens), std::move(special), "BpeTokenizer::train");
}

BpeTokenizer BpeTokenizer::train_files(const std::vector<std::string>& paths, const BpeTrainOptions& options) {
  PieceCounter counter(options);
  for (const auto& path : paths) counter.add(read_file(path, "BpeTokenizer::train_files"));
  auto [tokens, special] = learn(counter.counts(), options);
  return BpeTokenizer(std::move(tokens), std::move(special), "BpeTokenizer::train_files");
}

}  // namespace fm::text

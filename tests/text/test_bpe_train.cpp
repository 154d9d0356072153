// BpeTokenizer::train: the merges of a plain reference trainer, round trips,
// determinism, special tokens, fewer tokens with more merges, save/load.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "fm/error.h"
#include "fm/text/bpe.h"

namespace fs = std::filesystem;
using fm::text::BpeTokenizer;
using fm::text::BpeTrainOptions;

namespace {

BpeTrainOptions options(int32_t vocab_size, std::vector<std::string> special = {}, int64_t min_pair_count = 2) {
  BpeTrainOptions o;
  o.vocab_size = vocab_size;
  o.special_tokens = std::move(special);
  o.min_pair_count = min_pair_count;
  return o;
}

// Lowercase words from a small alphabet, one space apart: many overlapping
// pairs ("aaa") and ties in pair counts.
std::string small_alphabet_corpus(int n_words, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> vocabulary;
  for (int i = 0; i < 200; ++i) {
    std::string w(1 + rng() % 7, ' ');
    for (auto& c : w) c = "aabcde"[rng() % 6];
    vocabulary.push_back(w);
  }
  std::string text;
  for (int i = 0; i < n_words; ++i) {
    if (i) text += ' ';
    text += vocabulary[std::min(rng() % 200, rng() % 200)];  // skewed: low indices are frequent
  }
  return text;
}

// Byte-level BPE the plain way: recount every pair before each merge. Same
// rules as libfm: the most frequent pair, ties to the smaller (left, right)
// ids; bytes made twice keep their first id.
std::vector<std::string> reference_train(const std::string& corpus, size_t n_tokens, int64_t min_count) {
  std::map<std::string, int64_t> piece_counts;  // pre-tokens of words one space apart: "w", " w", ...
  for (size_t start = 0; start < corpus.size();) {
    const size_t end = corpus.find(' ', start + 1);
    piece_counts[corpus.substr(start, end - start)]++;
    start = end == std::string::npos ? corpus.size() : end;
  }
  std::vector<std::string> tokens;
  std::map<std::string, int32_t> id_of;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b)), id_of[tokens.back()] = b;
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [piece, count] : piece_counts) {
    std::vector<int32_t> symbols;
    for (const char c : piece) symbols.push_back(static_cast<unsigned char>(c));
    words.emplace_back(symbols, count);
  }
  while (tokens.size() < n_tokens) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const auto& [s, count] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pairs[{s[i], s[i + 1]}] += count;
    auto best = pairs.end();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)  // map order: ties go to the smaller pair
      if (best == pairs.end() || it->second > best->second) best = it;
    if (best == pairs.end() || best->second < min_count) break;
    const auto [a, b] = best->first;
    const std::string bytes = tokens[static_cast<size_t>(a)] + tokens[static_cast<size_t>(b)];
    if (!id_of.count(bytes)) id_of[bytes] = static_cast<int32_t>(tokens.size()), tokens.push_back(bytes);
    for (auto& [s, count] : words) {
      std::vector<int32_t> merged;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(id_of[bytes]);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s = merged;
    }
  }
  return tokens;
}

// Varied text: words made of syllables from several scripts, numbers,
// punctuation, whitespace, stray bytes.
std::string mixed_corpus(uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> syllables = {"to", "ken", "iz", "er", "mo", "del", "by", "te", "s", "The", "ü", "ça",
                                              "мо", "дель", "ток", "ен", "字", "节", "编码", "🙂", "4", "2", "'s",
                                              "'ll", ".", "(", ")", "->", "_", "\t", "\n", "\xff"};
  std::string text;
  for (int i = 0; i < 30000; ++i) {
    for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) text += syllables[std::min(rng(), rng()) % syllables.size()];
    text += rng() % 8 ? " " : "  ";
  }
  return text;
}

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("fm_test_bpe_train_" + std::to_string(::getpid()) + "_" + name);
}

std::vector<std::string> all_tokens(const BpeTokenizer& tok) {
  std::vector<std::string> out;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) out.emplace_back(tok.token_bytes(id));
  return out;
}

}  // namespace

TEST(BpeTrain, SameMergesAsAPlainReferenceTrainer) {
  for (const uint32_t seed : {1u, 2u, 3u}) {
    const std::string corpus = small_alphabet_corpus(10000, seed);
    const BpeTokenizer tok = BpeTokenizer::train(corpus, options(256 + 200));
    EXPECT_EQ(tok.vocab_size(), 256 + 200);
    EXPECT_EQ(all_tokens(tok), reference_train(corpus, 256 + 200, 2)) << "seed " << seed;
  }
}

TEST(BpeTrain, StopsWhenPairsAreRarerThanMinPairCount) {
  const std::string corpus = small_alphabet_corpus(300, 4);
  const BpeTokenizer tok = BpeTokenizer::train(corpus, options(5000, {}, 3));
  EXPECT_LT(tok.vocab_size(), 5000);
  EXPECT_EQ(all_tokens(tok), reference_train(corpus, 5000, 3));
}

TEST(BpeTrain, RoundTripsAndDeterminism) {
  const std::string corpus = mixed_corpus(5);
  const BpeTokenizer a = BpeTokenizer::train(corpus, options(600));
  const BpeTokenizer b = BpeTokenizer::train(corpus, options(600));
  EXPECT_EQ(a.vocab_size(), 600);
  EXPECT_EQ(all_tokens(a), all_tokens(b));
  EXPECT_EQ(a.decode(a.encode(corpus)), corpus);
  std::mt19937 rng(6);
  for (int i = 0; i < 500; ++i) {
    std::string s(rng() % 100, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    ASSERT_EQ(a.decode(a.encode(s)), s);
  }

  const fs::path file = temp_path("corpus.txt");
  std::ofstream(file, std::ios::binary) << corpus;
  const BpeTokenizer from_file = BpeTokenizer::train_files({file.string()}, options(600));
  fs::remove(file);
  EXPECT_EQ(all_tokens(from_file), all_tokens(a));
}

TEST(BpeTrain, MoreMergesFewerTokens) {
  const std::string corpus = mixed_corpus(7);
  size_t previous = corpus.size();
  for (const int32_t vocab : {256, 300, 500, 1000}) {
    const size_t n = BpeTokenizer::train(corpus, options(vocab)).encode(corpus).size();
    if (vocab == 256) {
      EXPECT_EQ(n, corpus.size());
    } else {
      EXPECT_LT(n, previous) << "vocab " << vocab;
    }
    previous = n;
  }
}

TEST(BpeTrain, SpecialTokensGetTheLastIdsAndAreNotLearnt) {
  std::string corpus;
  for (int i = 0; i < 500; ++i) corpus += "some text<|endoftext|>more text <|endoftext|>";
  const BpeTokenizer tok = BpeTokenizer::train(corpus, options(300, {"<|endoftext|>", "<|pad|>"}));
  EXPECT_EQ(tok.special_tokens().at("<|endoftext|>"), tok.vocab_size() - 2);
  EXPECT_EQ(tok.special_tokens().at("<|pad|>"), tok.vocab_size() - 1);
  for (int32_t id = 256; id < tok.vocab_size() - 2; ++id)
    EXPECT_EQ(tok.token_bytes(id).find("<|"), std::string_view::npos) << tok.token_bytes(id);
  const auto ids = tok.encode("text<|endoftext|>", true);
  EXPECT_EQ(ids.back(), tok.vocab_size() - 2);
  EXPECT_EQ(tok.decode(ids), "text<|endoftext|>");
}

TEST(BpeTrain, SaveLoadRoundTrip) {
  const std::string corpus = mixed_corpus(8);
  const BpeTokenizer tok = BpeTokenizer::train(corpus, options(800, {"<|endoftext|>"}));
  const fs::path path = temp_path("tok.bpe");
  tok.save(path.string());
  const BpeTokenizer loaded = BpeTokenizer::load(path.string());
  fs::remove(path);
  EXPECT_EQ(all_tokens(loaded), all_tokens(tok));
  EXPECT_EQ(loaded.special_tokens(), tok.special_tokens());
  EXPECT_EQ(loaded.encode(corpus, true), tok.encode(corpus, true));
}

TEST(BpeTrain, Errors) {
  try {
    BpeTokenizer::train("abc", options(257, {"<a>", "<b>"}));
    ADD_FAILURE() << "no error";
  } catch (const fm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 257"), std::string::npos) << e.what();
  }
  EXPECT_THROW(BpeTokenizer::train("abc", options(300, {"<a>", "<a>"})), fm::Error);
  EXPECT_THROW(BpeTokenizer::train("abc", options(300, {""})), fm::Error);
  EXPECT_EQ(BpeTokenizer::train("", options(300, {"<a>"})).vocab_size(), 257);
  EXPECT_THROW(BpeTokenizer::train_files({"/nonexistent/corpus.txt"}, options(300)), fm::Error);
}

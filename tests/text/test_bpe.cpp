// BpeTokenizer with GPT-2's vocabulary: exact ids of tiktoken's gpt2 encoding
// on the samples of tests/fixtures/make_bpe_fixtures.py, lossless round trips
// of any bytes, special tokens, the file formats and their errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "fm/error.h"
#include "fm/text/bpe.h"

namespace fs = std::filesystem;
using fm::text::BpeTokenizer;

namespace {

fs::path fixture(const std::string& name) {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures" / name;
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures" / name;
}

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok =
      BpeTokenizer::from_tiktoken(fixture("gpt2.tiktoken").string(), {{"<|endoftext|>", 50256}});
  return tok;
}

struct Sample {
  std::string label;
  bool allow_special = false;
  bool hashed = false;  // `ids` is empty and `hash` holds the ids' FNV-1a
  std::string text;
  uint32_t n_ids = 0;
  std::vector<int32_t> ids;
  uint64_t hash = 0;
};

uint64_t fnv1a(const std::vector<int32_t>& ids) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (const int32_t id : ids) h = (h ^ static_cast<uint64_t>(id)) * 0x100000001B3ull;
  return h;
}

// The format is described in make_bpe_fixtures.py.
std::vector<Sample> read_samples(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  auto get = [&](void* p, size_t n) { in.read(static_cast<char*>(p), static_cast<std::streamsize>(n)); };
  char magic[8];
  get(magic, 8);
  EXPECT_EQ(std::string(magic, 8), std::string("FMBPE1\n\0", 8));
  uint32_t count = 0;
  get(&count, 4);
  std::vector<Sample> samples(count);
  for (auto& s : samples) {
    uint16_t label_size = 0;
    get(&label_size, 2);
    s.label.resize(label_size);
    get(s.label.data(), label_size);
    uint8_t flags = 0;
    get(&flags, 1);
    s.allow_special = flags & 1;
    s.hashed = flags & 2;
    uint32_t size = 0;
    get(&size, 4);
    s.text.resize(size);
    get(s.text.data(), size);
    get(&s.n_ids, 4);
    if (s.hashed) {
      get(&s.hash, 8);
    } else {
      std::vector<uint16_t> ids(s.n_ids);
      get(ids.data(), 2 * ids.size());
      s.ids.assign(ids.begin(), ids.end());
    }
  }
  EXPECT_TRUE(in) << path << " is truncated";
  return samples;
}

std::string random_bytes(std::mt19937& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() % 256);
  return s;
}

fs::path temp_file(const std::string& name, const std::string& content) {
  const fs::path path = fs::temp_directory_path() / ("fm_test_bpe_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

// Expects fn to throw fm::Error whose message contains every one of `parts`.
template <class Fn>
void expect_error(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const fm::Error& e) {
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(BpeGpt2, MatchesTiktokenOnAllFixtureSamples) {
  const auto samples = read_samples(fixture("bpe_gpt2_samples.bin"));
  ASSERT_GT(samples.size(), 1000u);
  size_t bytes = 0, failures = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    bytes += s.text.size();
    const std::vector<int32_t> ids = gpt2().encode(s.text, s.allow_special);
    const bool same = ids.size() == s.n_ids && (s.hashed ? fnv1a(ids) == s.hash : ids == s.ids);
    EXPECT_EQ(gpt2().decode(ids), s.text) << "sample " << i << " (" << s.label << ")";
    if (!same && ++failures <= 5) {
      size_t first = 0;
      while (!s.hashed && first < std::min(ids.size(), s.ids.size()) && ids[first] == s.ids[first]) ++first;
      ADD_FAILURE() << "sample " << i << " (" << s.label << ", " << s.text.size() << " bytes): " << ids.size()
                    << " ids, tiktoken " << s.n_ids << (s.hashed ? " (hashed)" : "")
                    << (s.hashed ? "" : ", first difference at id " + std::to_string(first));
    }
  }
  EXPECT_EQ(failures, 0u) << "of " << samples.size() << " samples";
  EXPECT_GT(bytes, 2'000'000u);
}

TEST(BpeGpt2, KnownIdsAndVocabulary) {
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().encode("hello world"), (std::vector<int32_t>{31373, 995}));
  EXPECT_EQ(gpt2().token_bytes(50256), "<|endoftext|>");
  EXPECT_EQ(gpt2().token_bytes(0), "!");   // GPT-2's byte order: printable bytes first
  EXPECT_EQ(gpt2().token_bytes(220), " ");
  EXPECT_EQ(gpt2().special_tokens().at("<|endoftext|>"), 50256);
}

TEST(BpeGpt2, SpecialTokensOnlyWhenAllowed) {
  const std::string text = "a<|endoftext|><|endoftext|> b<|endoftext|>";
  EXPECT_EQ(gpt2().encode(text, true), (std::vector<int32_t>{64, 50256, 50256, 275, 50256}));
  const auto plain = gpt2().encode(text, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(gpt2().decode(plain), text);
  EXPECT_EQ(gpt2().decode(gpt2().encode(text, true)), text);
  EXPECT_EQ(gpt2().encode("<|endoftext|", true), gpt2().encode("<|endoftext|", false));
}

TEST(BpeGpt2, LongestSpecialTokenWinsAtOnePosition) {
  const BpeTokenizer tok =
      BpeTokenizer::from_tiktoken(fixture("gpt2.tiktoken").string(), {{"<a>", 50256}, {"<a><b>", 50257}});
  EXPECT_EQ(tok.encode("<a><b><a>", true), (std::vector<int32_t>{50257, 50256}));
}

TEST(BpeGpt2, AnyBytesRoundTrip) {
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string s = random_bytes(rng, rng() % 200);
    if (i % 3 == 0)  // mostly text, with stray bytes
      for (auto& c : s) c = rng() % 8 ? "ab c\n'1\xc3\xa9"[rng() % 9] : c;
    ASSERT_EQ(gpt2().decode(gpt2().encode(s)), s) << "case " << i;
  }
  const std::string zeros(5000, '\0');
  EXPECT_EQ(gpt2().decode(gpt2().encode(zeros)), zeros);
  EXPECT_TRUE(gpt2().encode("").empty());
}

TEST(BpeGpt2, EncodeIsThreadSafe) {
  const auto samples = read_samples(fixture("bpe_gpt2_samples.bin"));
  std::string text;
  for (size_t i = 0; i < samples.size(); i += 7) text += samples[i].text;
  const auto expected = gpt2().encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (auto& g : got) threads.emplace_back([&] { g = gpt2().encode(text); });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

TEST(BpeGpt2, SaveLoadRoundTrip) {
  const fs::path path = fs::temp_directory_path() / ("fm_test_bpe_gpt2_" + std::to_string(::getpid()) + ".bpe");
  gpt2().save(path.string());
  const BpeTokenizer loaded = BpeTokenizer::load(path.string());
  fs::remove(path);
  ASSERT_EQ(loaded.vocab_size(), gpt2().vocab_size());
  for (int32_t id = 0; id < loaded.vocab_size(); ++id) ASSERT_EQ(loaded.token_bytes(id), gpt2().token_bytes(id));
  EXPECT_EQ(loaded.special_tokens(), gpt2().special_tokens());
  const std::string text = "The tokenizer's file <|endoftext|> round trip \xff\xfe 123";
  EXPECT_EQ(loaded.encode(text, true), gpt2().encode(text, true));
}

// GPT-2's own files spell bytes in its byte-to-unicode alphabet; a small
// vocabulary in that form: 256 bytes in GPT-2's order, three merges, and
// <|endoftext|>.
TEST(BpeGpt2Files, LoadsEncoderJsonAndVocabBpe) {
  std::vector<int> order;  // GPT-2's byte order: printable Latin-1 first
  for (int b = 0; b < 256; ++b)
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  auto spell = [&](int b) {  // the alphabet's character for byte b, as UTF-8
    const auto pos = std::find(order.begin(), order.end(), b) - order.begin();
    const int cp = pos < 188 ? b : 256 + static_cast<int>(pos - 188);
    std::string s = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                              : std::string{static_cast<char>(0xC0 | cp >> 6), static_cast<char>(0x80 | (cp & 0x3F))};
    return s == "\"" || s == "\\" ? "\\" + s : s;
  };
  std::string json = "{";
  for (int id = 0; id < 256; ++id) json += "\"" + spell(order[static_cast<size_t>(id)]) + "\": " + std::to_string(id) + ", ";
  json += "\"" + spell(' ') + "t\": 256, \"he\": 257, \"" + spell(' ') + "the\": 258, \"<|endoftext|>\": 259}";
  const std::string space = spell(' ');  // "Ġ"
  const fs::path encoder = temp_file("encoder.json", json);
  const fs::path merges = temp_file("vocab.bpe", "#version: 0.2\n" + space + " t\nh e\n" + space + "t he\n");
  const BpeTokenizer tok = BpeTokenizer::from_gpt2_files(encoder.string(), merges.string());
  EXPECT_EQ(tok.vocab_size(), 260);
  EXPECT_EQ(tok.token_bytes(258), " the");
  EXPECT_EQ(tok.token_bytes(0), "!");
  EXPECT_EQ(tok.special_tokens().at("<|endoftext|>"), 259);
  EXPECT_EQ(tok.encode(" the he<|endoftext|>", true), (std::vector<int32_t>{258, 220, 257, 259}));

  // Merge 1 must give token 257.
  const fs::path bad = temp_file("bad_vocab.bpe", "#version: 0.2\n" + space + " t\n" + space + "t he\n");
  expect_error([&] { BpeTokenizer::from_gpt2_files(encoder.string(), bad.string()); },
               {bad.string() + ":3:", "must give token 257"});
  const fs::path not_json = temp_file("bad_encoder.json", "{\"a\": 1,");
  expect_error([&] { BpeTokenizer::from_gpt2_files(not_json.string(), merges.string()); },
               {not_json.string(), "not valid JSON"});
  for (const auto& p : {encoder, merges, bad, not_json}) fs::remove(p);
}

TEST(BpeErrors, MalformedRankFilesNameFileAndLine) {
  // A valid rank file of the 256 bytes: base64 of each byte, rank = byte.
  const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string good;
  for (int b = 0; b < 256; ++b) good += std::string{b64[b >> 2], b64[(b & 3) << 4], '=', '='} + " " + std::to_string(b) + "\n";
  const fs::path ok = temp_file("ok.tiktoken", good);
  EXPECT_EQ(BpeTokenizer::from_tiktoken(ok.string()).vocab_size(), 256);

  struct Case {
    std::string content, expected;
  };
  const std::vector<Case> cases = {
      {good + "a$== 256\n", ":257: 'a$==' is not base64"},
      {good + "YWI= x\n", ":257: 'x' is not a token id"},
      {good + "YWI=\n", ":257: expected '<base64 token> <id>'"},
      {good + "YWI= 3\n", ":257: id 3 appears twice (also on line 4)"},
      {good + "YWI= 99999999999\n", ":257: '99999999999' is not a token id"},
      {good.substr(good.find('\n') + 1), "no token for the single byte 0x00"},
      {good + "AA== 256\n", "tokens 0 and 256 have the same bytes"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path p = temp_file("bad" + std::to_string(i) + ".tiktoken", cases[i].content);
    expect_error([&] { BpeTokenizer::from_tiktoken(p.string()); }, {p.string(), cases[i].expected});
    fs::remove(p);
  }
  expect_error([&] { BpeTokenizer::from_tiktoken("/nonexistent/x.tiktoken"); }, {"/nonexistent/x.tiktoken"});
  expect_error([&] { BpeTokenizer::load(ok.string()); }, {ok.string() + ":1:", "libfm-bpe 1"});
  const fs::path bad_special = temp_file("bad_special.bpe", "libfm-bpe 1\nspecial 300\n" + good);
  expect_error([&] { BpeTokenizer::load(bad_special.string()); },
               {bad_special.string() + ":2:", "expected 'special <id> <base64 token>'"});
  const fs::path taken = temp_file("taken.bpe", "libfm-bpe 1\nspecial 5 PHw+\n" + good);
  expect_error([&] { BpeTokenizer::load(taken.string()); }, {taken.string() + ":8:", "id 5 appears twice"});
  for (const auto& p : {ok, bad_special, taken}) fs::remove(p);
}

TEST(BpeErrors, DecodeNamesTheBadId) {
  expect_error([] { gpt2().decode(std::vector<int32_t>{31373, 50257}); }, {"token id 50257", "position 1"});
  expect_error([] { gpt2().decode(std::vector<int32_t>{-1}); }, {"token id -1"});
  expect_error([] { gpt2().token_bytes(60000); }, {"token id 60000"});
}

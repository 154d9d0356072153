// Token shards (llm.c / nanoGPT .bin): the exact bytes of the format, corrupt
// files, shards read by numpy as llm.c and nanoGPT read them, TokenWindows'
// deterministic batches, and prepare_text_shards' splits and shard sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "fm/data/prepare_text.h"
#include "fm/data/token_shard.h"
#include "fm/data/token_windows.h"
#include "fm/error.h"
#include "helpers.h"

using namespace fm;
using namespace fm::data;
using fm::test::read_file;
using fm::test::write_file;
namespace fs = std::filesystem;
using Bytes = std::string;  // file contents
using Tokens = std::vector<uint32_t>;

namespace {

class TokenData : public fm::test::TempDirTest {
 protected:
  TokenData() : TempDirTest("fm_token_data_") {}
};

void append_le(Bytes& b, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(char((v >> (8 * i)) & 0xFF));
}

// The bytes the spec prescribes: 256 little-endian int32 (magic, version,
// count, zeros), then each token in `token_bytes` little-endian bytes.
Bytes spec_bytes(int32_t magic, int32_t version, int32_t count, const Tokens& tokens, int token_bytes) {
  Bytes b;
  append_le(b, uint32_t(magic), 4);
  append_le(b, uint32_t(version), 4);
  append_le(b, uint32_t(count), 4);
  b.append(253 * 4, '\0');
  for (uint32_t t : tokens) append_le(b, t, token_bytes);
  return b;
}

// `f` throws fm::Error and its message contains `part`.
template <class F>
::testing::AssertionResult throws_containing(F&& f, const std::string& part) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message '" << e.what() << "' lacks '" << part << "'";
  }
  return ::testing::AssertionFailure() << "no fm::Error thrown";
}

std::vector<int64_t> values(const Tensor& t) { return t.to_vector<int64_t>(); }

bool shell_succeeds(const std::string& command) { return std::system((command + " > /dev/null 2>&1").c_str()) == 0; }

fs::path fixtures_dir() {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures";
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures";
}

// ------------------------------------------------------------------ the format

using TokenShardFormat = TokenData;

TEST_F(TokenShardFormat, WritesUint16ShardsByteForByte) {
  const Tokens tokens = {0, 1, 255, 256, 50256, 65535};
  const Bytes expected = spec_bytes(20240520, 1, 6, tokens, 2);
  write_token_shard(path("auto.bin"), tokens);
  write_token_shard(path("v1.bin"), tokens, 1);
  EXPECT_EQ(read_file(path("auto.bin")), expected);
  EXPECT_EQ(read_file(path("v1.bin")), expected);
}

TEST_F(TokenShardFormat, WritesUint32WhenATokenNeedsItOrWhenAsked) {
  const Tokens big = {5, 65536, 100000, 4294967295u};
  write_token_shard(path("auto.bin"), big);
  EXPECT_EQ(read_file(path("auto.bin")), spec_bytes(20240520, 2, 4, big, 4));
  write_token_shard(path("v2.bin"), {1, 2}, 2);
  EXPECT_EQ(read_file(path("v2.bin")), spec_bytes(20240520, 2, 2, {1, 2}, 4));
  write_token_shard(path("empty.bin"), {});
  EXPECT_EQ(read_file(path("empty.bin")), spec_bytes(20240520, 1, 0, {}, 2));
}

TEST_F(TokenShardFormat, WriteRejectsTokensAVersionCannotHoldAndUnknownVersions) {
  EXPECT_TRUE(throws_containing([&] { write_token_shard(path("a.bin"), {1, 65536}, 1); },
                                "token 65536 at index 1 does not fit version 1"));
  EXPECT_TRUE(throws_containing([&] { write_token_shard(path("a.bin"), {1}, 3); }, "version 3 is not"));
  EXPECT_TRUE(files_in_dir().empty());  // no file, no temp file left behind
}

TEST_F(TokenShardFormat, RoundTripsBothVersions) {
  for (const Tokens& tokens : {Tokens{7, 0, 65535, 42, 3}, Tokens{7, 0, 65536, 42, 2000000000}}) {
    write_token_shard(path("s.bin"), tokens);
    const TokenShard shard(path("s.bin"));
    EXPECT_EQ(shard.version(), tokens[2] > 65535 ? 2 : 1);
    ASSERT_EQ(shard.size(), 5);
    for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(shard[i], tokens[size_t(i)]);
    int32_t narrow[3];
    int64_t wide[3];
    shard.copy_window(1, 3, narrow);
    shard.copy_window(2, 3, wide);
    EXPECT_EQ(std::vector<int32_t>(narrow, narrow + 3), (std::vector<int32_t>{0, int32_t(tokens[2]), 42}));
    EXPECT_EQ(std::vector<int64_t>(wide, wide + 3), (std::vector<int64_t>{tokens[2], 42, tokens[4]}));
  }
  write_token_shard(path("empty.bin"), {});
  EXPECT_EQ(TokenShard(path("empty.bin")).size(), 0);
}

TEST_F(TokenShardFormat, AccessOutsideTheShardIsAnError) {
  write_token_shard(path("s.bin"), {1, 2, 3});
  const TokenShard shard(path("s.bin"));
  int64_t out[4];
  EXPECT_TRUE(throws_containing([&] { (void)shard[3]; }, "tokens [3, 4) are outside the shard's 3 tokens"));
  EXPECT_TRUE(throws_containing([&] { shard.copy_window(2, 2, out); }, "outside"));
  EXPECT_TRUE(throws_containing([&] { shard.copy_window(-1, 1, out); }, "outside"));
}

TEST_F(TokenShardFormat, Int32CopiesRejectIdsAboveInt32Max) {
  write_token_shard(path("s.bin"), {1, 3000000000u});
  const TokenShard shard(path("s.bin"));
  int64_t wide[2];
  shard.copy_window(0, 2, wide);
  EXPECT_EQ(wide[1], 3000000000);
  int32_t narrow[2];
  EXPECT_TRUE(throws_containing([&] { shard.copy_window(0, 2, narrow); }, "token 3000000000 at index 1"));
}

// ------------------------------------------------------------------ validation

TEST_F(TokenShardFormat, RejectsFilesShorterThanTheHeader) {
  const Bytes valid = spec_bytes(20240520, 1, 4, {1, 2, 3, 4}, 2);
  for (size_t length : {0, 1, 4, 12, 1000, 1023}) {
    write_file(path("s.bin"), valid.substr(0, length));
    EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("s.bin")); },
                                  "token shard " + path("s.bin") + ": file is " + std::to_string(length) +
                                      " bytes, shorter than the 1024-byte header"));
  }
}

TEST_F(TokenShardFormat, RejectsTruncatedTokens) {
  const Bytes valid = spec_bytes(20240520, 1, 4, {1, 2, 3, 4}, 2);
  for (size_t data_bytes : {0, 1, 6, 7}) {
    write_file(path("s.bin"), valid.substr(0, 1024 + data_bytes));
    EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("s.bin")); },
                                  "the header counts 4 uint16 tokens (8 bytes) but the file has " +
                                      std::to_string(data_bytes) + " bytes after the 1024-byte header"));
  }
}

TEST_F(TokenShardFormat, RejectsBadMagicWithAHint) {
  write_file(path("train_000.bin"), spec_bytes(12345, 1, 1, {1}, 2));
  try {
    TokenShard shard(path("train_000.bin"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "token shard " + path("train_000.bin") +
                                         ": bad magic 12345 (expected 20240520; is this an llm.c/nanoGPT .bin shard?)");
  }
}

TEST_F(TokenShardFormat, RejectsUnknownVersions) {
  for (int32_t version : {0, 3, 7, -1}) {
    write_file(path("s.bin"), spec_bytes(20240520, version, 1, {1}, 4));
    EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("s.bin")); },
                                  "unknown version " + std::to_string(version)));
  }
}

TEST_F(TokenShardFormat, RejectsCountsThatDoNotMatchTheFileSize) {
  write_file(path("more.bin"), spec_bytes(20240520, 1, 5, {1, 2, 3, 4}, 2));
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("more.bin")); },
                                "counts 5 uint16 tokens (10 bytes) but the file has 8 bytes"));
  write_file(path("fewer.bin"), spec_bytes(20240520, 2, 3, {1, 2, 3, 4}, 4));
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("fewer.bin")); },
                                "counts 3 uint32 tokens (12 bytes) but the file has 16 bytes"));
  write_file(path("negative.bin"), spec_bytes(20240520, 1, -2, {}, 2));
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("negative.bin")); }, "negative token count -2"));
}

TEST_F(TokenShardFormat, RejectsTokensOutsideTheVocab) {
  write_token_shard(path("u16.bin"), {1, 2, 50257, 3});
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("u16.bin"), 50257); },
                                "token shard " + path("u16.bin") +
                                    ": token 50257 at index 2 is not below the vocab size 50257"));
  EXPECT_EQ(TokenShard(path("u16.bin"), 50258).size(), 4);
  write_token_shard(path("u32.bin"), {1, 100000, 99999});
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("u32.bin"), 100000); }, "token 100000 at index 1"));
  EXPECT_EQ(TokenShard(path("u32.bin"), 100001).size(), 3);
}

TEST_F(TokenShardFormat, MissingFilesAndDirectoriesAreErrors) {
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(path("none.bin")); },
                                "token shard " + path("none.bin") + ": cannot open: No such file"));
  EXPECT_TRUE(throws_containing([&] { TokenShard shard(dir_.string()); }, "not a regular file"));
}

// ------------------------------------------------------------------ read by numpy

TEST_F(TokenShardFormat, NumpyReadsShardsAsLlmcAndNanoGptDo) {
  if (!shell_succeeds("python3 -c 'import numpy'")) GTEST_SKIP() << "python3 with numpy is not installed";
  const std::string checker = (fixtures_dir() / "check_llmc_shard.py").string();
  ASSERT_TRUE(fs::exists(checker)) << checker << " (set FM_SOURCE_DIR to the source tree)";
  for (const Tokens& tokens : {Tokens{50256, 0, 1, 65535, 1212, 318}, Tokens{3, 65536, 128000, 4294967295u}}) {
    write_token_shard(path("s.bin"), tokens);
    const std::string out = path("tokens.txt");
    ASSERT_EQ(std::system(("python3 -B '" + checker + "' '" + path("s.bin") + "' > '" + out + "'").c_str()), 0);
    std::istringstream printed(read_file(out));
    Tokens read_back;
    for (uint64_t t; printed >> t;) read_back.push_back(uint32_t(t));
    EXPECT_EQ(read_back, tokens);
  }
}

// ------------------------------------------------------------------ TokenWindows

// Shards whose tokens tell where they are: token k * 100000 + i is token i of shard k.
class TokenWindowsTest : public TokenData {
 protected:
  std::vector<std::string> write_shards(const std::vector<int64_t>& lengths) {
    std::vector<std::string> paths;
    for (size_t k = 0; k < lengths.size(); ++k) {
      Tokens tokens(size_t(lengths[k]));
      std::iota(tokens.begin(), tokens.end(), uint32_t(k * 100000));
      paths.push_back(path("train_00" + std::to_string(k) + ".bin"));
      write_token_shard(paths.back(), tokens);
    }
    return paths;
  }
  static TokenWindowsOptions options(int64_t B, int64_t T, uint64_t seed = 1, int rank = 0, int world = 1) {
    TokenWindowsOptions o;
    o.batch_size = B;
    o.seq_len = T;
    o.seed = seed;
    o.rank = rank;
    o.world_size = world;
    return o;
  }
};

TEST_F(TokenWindowsTest, TargetsAreInputsShiftedAndWindowsStayInOneShard) {
  const std::vector<int64_t> lengths = {50, 120};
  write_shards(lengths);
  const int64_t B = 4, T = 16;
  TokenWindows windows(path("train_*.bin"), options(B, T));
  ASSERT_EQ(windows.shards().size(), 2u);
  for (int step = 0; step < 50; ++step) {
    const Batch batch = windows.next();
    ASSERT_EQ(batch.inputs.shape(), Shape({B, T}));
    ASSERT_EQ(batch.targets.shape(), Shape({B, T}));
    ASSERT_EQ(batch.inputs.dtype(), DType::i64);
    const std::vector<int64_t> in = values(batch.inputs), tg = values(batch.targets);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t first = in[size_t(b * T)], shard = first / 100000, start = first % 100000;
      EXPECT_LE(start + T + 1, lengths[size_t(shard)]) << "window runs past its shard";
      for (int64_t t = 0; t < T; ++t) {
        EXPECT_EQ(in[size_t(b * T + t)], first + t);
        EXPECT_EQ(tg[size_t(b * T + t)], first + t + 1);
      }
    }
  }
  EXPECT_EQ(windows.position(), 50);
}

TEST_F(TokenWindowsTest, SameSeedStepAndRankGiveTheSameWindows) {
  const auto paths = write_shards({300, 500});
  TokenWindows a(paths, options(4, 8, 7)), b(paths, options(4, 8, 7)), other_seed(paths, options(4, 8, 8));
  for (int64_t step : {0, 1, 5, 1000000}) {
    EXPECT_EQ(values(a.batch(step).inputs), values(b.batch(step).inputs));
    EXPECT_EQ(values(a.batch(step).targets), values(b.batch(step).targets));
    EXPECT_NE(values(a.batch(step).inputs), values(other_seed.batch(step).inputs));
  }
  EXPECT_NE(values(a.batch(0).inputs), values(a.batch(1).inputs));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(values(a.next().inputs), values(b.next().inputs));
}

TEST_F(TokenWindowsTest, RanksDrawDifferentWindows) {
  const auto paths = write_shards({300, 500});
  TokenWindows rank0(paths, options(4, 8, 1, 0, 2)), rank1(paths, options(4, 8, 1, 1, 2));
  for (int64_t step = 0; step < 10; ++step)
    EXPECT_NE(values(rank0.batch(step).inputs), values(rank1.batch(step).inputs)) << "step " << step;
}

TEST_F(TokenWindowsTest, RanksTogetherDrawWhatOneRankWithTheWholeBatchDraws) {
  const auto paths = write_shards({300, 500});
  TokenWindows whole(paths, options(6, 8, 3)), rank0(paths, options(3, 8, 3, 0, 2)),
      rank1(paths, options(3, 8, 3, 1, 2));
  for (int64_t step = 0; step < 5; ++step) {
    std::vector<int64_t> joined = values(rank0.batch(step).inputs);
    const std::vector<int64_t> second = values(rank1.batch(step).inputs);
    joined.insert(joined.end(), second.begin(), second.end());
    EXPECT_EQ(joined, values(whole.batch(step).inputs)) << "step " << step;
  }
}

TEST_F(TokenWindowsTest, SetPositionResumesWithTheSameNextBatch) {
  const auto paths = write_shards({300, 500});
  TokenWindows run(paths, options(4, 8));
  std::vector<std::vector<int64_t>> drawn;
  for (int i = 0; i < 6; ++i) drawn.push_back(values(run.next().inputs));

  TokenWindows resumed(paths, options(4, 8));
  resumed.set_position(3);  // as if restored from a checkpoint taken after 3 batches
  EXPECT_EQ(values(resumed.next().inputs), drawn[3]);
  EXPECT_EQ(values(resumed.next().inputs), drawn[4]);
  EXPECT_EQ(resumed.position(), 5);
  EXPECT_TRUE(throws_containing([&] { resumed.set_position(-1); }, "negative"));
}

TEST_F(TokenWindowsTest, StartsAreUniformOverAllValidStarts) {
  // 992 and 2992 valid starts: shard 0 should get 992 / 3984 = 24.9% of the windows.
  write_shards({1000, 3000});
  const int64_t B = 16, T = 8, steps = 400;
  TokenWindows windows(path("train_*.bin"), options(B, T, 11));
  int64_t from_first = 0;
  std::vector<int64_t> quarters(4, 0);  // where in shard 1 its windows start
  for (int64_t step = 0; step < steps; ++step) {
    const std::vector<int64_t> in = values(windows.batch(step).inputs);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t first = in[size_t(b * T)];
      if (first < 100000)
        ++from_first;
      else
        ++quarters[size_t((first - 100000) * 4 / 2992)];
    }
  }
  const double n = double(B * steps);
  EXPECT_NEAR(double(from_first) / n, 992.0 / 3984.0, 0.03);  // about 5.5 standard deviations
  for (int64_t q : quarters) EXPECT_NEAR(double(q) / (n - double(from_first)), 0.25, 0.04);
}

TEST_F(TokenWindowsTest, SequentialBlocksWalkTheConcatenatedShardsAndWrap) {
  write_shards({10, 7});
  std::vector<int64_t> all;  // the concatenation
  for (int64_t i = 0; i < 10; ++i) all.push_back(i);
  for (int64_t i = 0; i < 7; ++i) all.push_back(100000 + i);
  const int64_t B = 2, T = 3, N = 17;
  TokenWindows windows(path("train_*.bin"), options(B, T));
  EXPECT_EQ(windows.total_tokens(), N);
  EXPECT_EQ(windows.sequential_batches(), 2);
  for (int64_t index = 0; index < 7; ++index) {
    std::vector<int64_t> inputs, targets;
    for (int64_t i = 0; i < B * T; ++i) {
      inputs.push_back(all[size_t((index * B * T + i) % N)]);
      targets.push_back(all[size_t((index * B * T + i + 1) % N)]);
    }
    const Batch batch = windows.sequential(index);
    EXPECT_EQ(values(batch.inputs), inputs) << "index " << index;
    EXPECT_EQ(values(batch.targets), targets) << "index " << index;
  }
  windows.next();  // random draws do not move the eval blocks
  EXPECT_EQ(values(windows.sequential(0).inputs), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
}

TEST_F(TokenWindowsTest, PatternsMatchInSortedOrderAndListsKeepTheirOrder) {
  const auto paths = write_shards({20, 30, 40});
  TokenWindows globbed(path("train_*.bin"), options(1, 4));
  ASSERT_EQ(globbed.shards().size(), 3u);
  for (size_t k = 0; k < 3; ++k) EXPECT_EQ(globbed.shards()[k].path(), paths[k]);
  TokenWindows listed({paths[2], paths[0]}, options(1, 4));
  ASSERT_EQ(listed.shards().size(), 2u);
  EXPECT_EQ(listed.shards()[0].path(), paths[2]);
  EXPECT_EQ(listed.total_tokens(), 60);
}

TEST_F(TokenWindowsTest, ErrorsNameThePatternAndTheShortShard) {
  write_shards({20, 8});
  const std::string pattern = path("val_*.bin");
  EXPECT_TRUE(throws_containing([&] { TokenWindows w(pattern, options(1, 4)); },
                                "TokenWindows: no files match '" + pattern + "'"));
  EXPECT_TRUE(throws_containing([&] { TokenWindows w(path("gone.bin"), options(1, 4)); },
                                "TokenWindows: no such file '" + path("gone.bin") + "'"));
  EXPECT_TRUE(throws_containing([&] { TokenWindows w(path("train_*.bin"), options(1, 8)); },
                                "token shard " + path("train_001.bin") + " has 8 tokens, fewer than seq_len + 1 = 9"));
  EXPECT_NO_THROW(TokenWindows(path("train_*.bin"), options(1, 7)));
  EXPECT_TRUE(throws_containing([&] { TokenWindows w(path("train_*.bin"), options(1, 4, 1, 2, 2)); },
                                "rank 2 is not in [0, world_size = 2)"));
  TokenWindowsOptions with_vocab = options(1, 4);
  with_vocab.vocab_size = 100;
  EXPECT_TRUE(throws_containing([&] { TokenWindows w(path("train_*.bin"), with_vocab); },
                                "token 100000 at index 0 is not below the vocab size 100"));
}

// ------------------------------------------------------------------ prepare_text_shards

class PrepareText : public TokenData {
 protected:
  // Tokens are the text's bytes; the end-of-text token is 256.
  static Tokens bytes_of(std::string_view text) { return Tokens(text.begin(), text.end()); }
  static constexpr uint32_t kEot = 256;

  std::vector<std::string> write_docs(const std::vector<std::string>& texts) {
    std::vector<std::string> paths;
    for (size_t i = 0; i < texts.size(); ++i) {
      paths.push_back(path("doc" + std::to_string(i) + ".txt"));
      write_file(paths.back(), texts[i]);
    }
    return paths;
  }
  static Tokens read_tokens(const std::vector<std::string>& shards) {
    Tokens out;
    for (const auto& p : shards) {
      const TokenShard shard(p);
      for (int64_t i = 0; i < shard.size(); ++i) out.push_back(shard[i]);
    }
    return out;
  }
  static std::vector<int64_t> sizes(const std::vector<std::string>& shards) {
    std::vector<int64_t> out;
    for (const auto& p : shards) out.push_back(TokenShard(p).size());
    return out;
  }
  std::string out_dir() const { return path("out"); }
};

TEST_F(PrepareText, TheFirstDocumentsGoToVal) {
  const auto docs = write_docs({"aa", "bbb", "c", "dddd", "ee"});
  const PrepareStats stats = prepare_text_shards(docs, bytes_of, kEot, out_dir(), "tiny", 0.2, 1000);
  EXPECT_EQ(stats.files, 5);
  EXPECT_EQ(stats.bytes, 12);
  EXPECT_EQ(stats.val_tokens, 3);
  EXPECT_EQ(stats.train_tokens, 14);
  ASSERT_EQ(stats.val_shards, std::vector<std::string>{out_dir() + "/tiny_val_000.bin"});
  ASSERT_EQ(stats.train_shards, std::vector<std::string>{out_dir() + "/tiny_train_000.bin"});
  EXPECT_EQ(read_tokens(stats.val_shards), (Tokens{'a', 'a', kEot}));
  EXPECT_EQ(read_tokens(stats.train_shards),
            (Tokens{'b', 'b', 'b', kEot, 'c', kEot, 'd', 'd', 'd', 'd', kEot, 'e', 'e', kEot}));
}

TEST_F(PrepareText, ValGetsAtLeastOneDocumentAndTrainKeepsOne) {
  const auto docs = write_docs({"x", "y", "z"});
  PrepareStats stats = prepare_text_shards(docs, bytes_of, kEot, out_dir(), "d", 0.01, 1000);
  EXPECT_EQ(read_tokens(stats.val_shards), (Tokens{'x', kEot}));
  stats = prepare_text_shards(docs, bytes_of, kEot, out_dir(), "d", 0.99, 1000);
  EXPECT_EQ(read_tokens(stats.val_shards), (Tokens{'x', kEot, 'y', kEot}));
  EXPECT_EQ(read_tokens(stats.train_shards), (Tokens{'z', kEot}));
}

TEST_F(PrepareText, ASingleDocumentGivesItsLastTokensToVal) {
  const std::string text(99, 'q');
  const auto docs = write_docs({text});
  const PrepareStats stats = prepare_text_shards(docs, bytes_of, kEot, out_dir(), "one", 0.1, 1000);
  EXPECT_EQ(stats.train_tokens, 90);  // 100 tokens with the eot, of which round(0.1 * 100) go to val
  EXPECT_EQ(stats.val_tokens, 10);
  Tokens val(9, 'q');
  val.push_back(kEot);
  EXPECT_EQ(read_tokens(stats.val_shards), val);
  EXPECT_EQ(read_tokens(stats.train_shards), Tokens(90, 'q'));
}

TEST_F(PrepareText, ShardsAreFullExceptTheLastTwoWhichShareTheRest) {
  const std::string text(1000, 'z');
  const auto docs = write_docs({text});
  PrepareStats stats = prepare_text_shards(docs, bytes_of, kNoEotToken, out_dir(), "s", 0, 300);
  EXPECT_EQ(sizes(stats.train_shards), (std::vector<int64_t>{300, 300, 200, 200}));
  EXPECT_TRUE(stats.val_shards.empty());
  EXPECT_EQ(stats.val_tokens, 0);
  stats = prepare_text_shards(docs, bytes_of, kNoEotToken, out_dir(), "s", 0, 1000);
  EXPECT_EQ(sizes(stats.train_shards), (std::vector<int64_t>{1000}));
  stats = prepare_text_shards(docs, bytes_of, kNoEotToken, out_dir(), "s", 0, 999);
  EXPECT_EQ(sizes(stats.train_shards), (std::vector<int64_t>{500, 500}));

  // Many documents: every shard within the limit and the tokens in order.
  std::vector<std::string> texts;
  Tokens expected;
  for (int i = 0; i < 40; ++i) {
    texts.push_back(std::string(size_t(1 + i * 7 % 23), char('a' + i % 26)));
    const Tokens t = bytes_of(texts.back());
    expected.insert(expected.end(), t.begin(), t.end());
    expected.push_back(kEot);
  }
  stats = prepare_text_shards(write_docs(texts), bytes_of, kEot, out_dir(), "many", 0, 37);
  EXPECT_EQ(read_tokens(stats.train_shards), expected);
  const std::vector<int64_t> n = sizes(stats.train_shards);
  for (size_t i = 0; i < n.size(); ++i) {
    EXPECT_LE(n[i], 37);
    if (i + 2 < n.size()) {
      EXPECT_EQ(n[i], 37);
    } else {
      EXPECT_GE(n[i], 19);  // the last two share at least one full shard's worth
    }
  }
}

TEST_F(PrepareText, LargeIdsAreStoredAsUint32) {
  const auto docs = write_docs({"ab", "cd"});
  auto shifted = [](std::string_view text) {
    Tokens t = bytes_of(text);
    for (auto& id : t) id += 70000;
    return t;
  };
  const PrepareStats stats = prepare_text_shards(docs, shifted, 100000, out_dir(), "big", 0.5, 100);
  EXPECT_EQ(TokenShard(stats.train_shards[0]).version(), 2);
  EXPECT_EQ(read_tokens(stats.train_shards), (Tokens{70000 + 'c', 70000 + 'd', 100000}));
}

TEST_F(PrepareText, UnreadableInputsAreErrorsNamingThem) {
  auto docs = write_docs({"fine"});
  docs.push_back(path("missing.txt"));
  EXPECT_TRUE(throws_containing([&] { prepare_text_shards(docs, bytes_of, kEot, out_dir(), "x", 0, 10); },
                                "prepare_text_shards: cannot read " + path("missing.txt")));
  EXPECT_FALSE(fs::exists(out_dir())) << "found before anything was written";
  docs.back() = dir_.string();
  EXPECT_TRUE(throws_containing([&] { prepare_text_shards(docs, bytes_of, kEot, out_dir(), "x", 0, 10); },
                                "cannot read " + dir_.string()));
  EXPECT_TRUE(throws_containing([&] { prepare_text_shards({}, bytes_of, kEot, out_dir(), "x", 0, 10); },
                                "no input files"));
  EXPECT_TRUE(throws_containing([&] { prepare_text_shards(docs, bytes_of, kEot, out_dir(), "x", 1.0, 10); },
                                "val_fraction 1 is not in [0, 1)"));
}

TEST_F(PrepareText, ARerunRemovesTheShardsItNoLongerWrites) {
  const auto docs = write_docs({std::string(100, 'a'), std::string(100, 'b')});
  prepare_text_shards(docs, bytes_of, kEot, out_dir(), "d", 0.5, 20);  // 6 train shards
  write_file(out_dir() + "/other_train_000.bin", "not ours");
  write_file(out_dir() + "/d_train_notes.bin", "not a shard name");
  const PrepareStats stats = prepare_text_shards(docs, bytes_of, kEot, out_dir(), "d", 0.5, 60);
  EXPECT_EQ(stats.train_shards.size(), 2u);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(out_dir())) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"d_train_000.bin", "d_train_001.bin", "d_train_notes.bin",
                                            "d_val_000.bin", "d_val_001.bin", "other_train_000.bin"}));
}

TEST_F(PrepareText, PreparedShardsFeedTokenWindows) {
  std::vector<std::string> texts;
  for (int i = 0; i < 10; ++i) texts.push_back(std::string(50, char('a' + i)));
  const PrepareStats stats = prepare_text_shards(write_docs(texts), bytes_of, kEot, out_dir(), "e2e", 0.1, 128);
  TokenWindowsOptions o;
  o.batch_size = 2;
  o.seq_len = 32;
  o.vocab_size = 257;
  TokenWindows train(out_dir() + "/e2e_train_*.bin", o), val(out_dir() + "/e2e_val_*.bin", o);
  EXPECT_EQ(train.total_tokens(), stats.train_tokens);
  EXPECT_EQ(val.total_tokens(), 51);
  EXPECT_EQ(values(val.sequential(0).inputs)[0], 'a');
  EXPECT_EQ(values(train.next().targets).size(), 64u);
}

}  // namespace

// The corrupt-input corpus for libfm::core's readers: safetensors files,
// checkpoints (load_checkpoint into an nn::Linear(2 -> 3), latest_checkpoint
// over step directories) and metrics.jsonl (its repair on resume). See
// tests/corrupt_cases.h and tests/fixtures/make_corrupt.py.
#include <unistd.h>

#include <filesystem>

#include "corrupt_cases.h"
#include "fm/fm.h"
#include "fm/io/checkpoint.h"
#include "fm/io/metrics_log.h"
#include "fm/io/safetensors.h"
#include "fm/nn/layers.h"
#include "helpers.h"

namespace fm::test {
namespace {

namespace fs = std::filesystem;

ReadOutcome read_safetensors(const std::string& path) {
  const io::Safetensors st = io::load_safetensors(path);
  for (const auto& [name, t] : st.tensors) (void)t.to_vector<double>();  // touch every value
  return {};
}

ReadOutcome read_checkpoint(const std::string& dir) {
  nn::Linear model(nn::LinearOptions{2, 3});
  const std::vector<float> before = model.weight.to_vector<float>();
  try {
    io::load_checkpoint(dir, model);
  } catch (const Error&) {
    // "the model is unchanged then"
    EXPECT_EQ(model.weight.to_vector<float>(), before) << "a failed load changed the model";
    throw;
  }
  return {};
}

ReadOutcome read_latest(const std::string& dir) {
  std::vector<std::string> skipped;
  const std::string latest = io::latest_checkpoint(dir, &skipped);
  EXPECT_EQ(fs::path(latest).filename(), "step_1") << "the newest valid checkpoint is step_1";
  return {int64_t(skipped.size()), skipped};
}

// MetricsLog rewrites the file it opens: it works on a copy with the same name.
ReadOutcome read_metrics(const std::string& path) {
  const fs::path dir = fs::temp_directory_path() / ("fm_corrupt_metrics_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path copy = dir / fs::path(path).filename();
  fs::copy_file(path, copy, fs::copy_options::overwrite_existing);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() { fs::remove_all(dir); }
  } cleanup{dir};
  {
    io::MetricsLog log(copy.string(), /*resume_from_step=*/2);
    log.log(2, {{"loss", 1.0}});
  }
  // The repaired file: whole lines only, each a JSON object with a step, and the new line last.
  const std::string text = read_file(copy.string());
  EXPECT_TRUE(!text.empty() && text.back() == '\n') << text;
  EXPECT_NE(text.find("{\"step\":2,\"loss\":1.0}\n"), std::string::npos) << text;
  return {};
}

const std::map<std::string, CorruptReader> kReaders = {
    {"safetensors", read_safetensors},
    {"checkpoint", read_checkpoint},
    {"latest_checkpoint", read_latest},
    {"metrics", read_metrics},
};

class CorruptCore : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptCore, ErrorOrSkipNeverCrash) { run_corrupt_case(GetParam(), kReaders.at(GetParam().reader)); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptCore,
                         ::testing::ValuesIn(corrupt_cases({"safetensors", "checkpoint", "latest_checkpoint",
                                                            "metrics"})),
                         case_name);

// Every reader the manifest names is run by one of the corrupt-input tests.
TEST(CorruptCorpus, EveryReaderHasATest) {
  const std::vector<std::string> known = {
      "safetensors", "checkpoint", "latest_checkpoint", "metrics",                  // tests/core
      "ini", "overrides",                                                           // tests/train
      "token_shard", "captions", "wds", "midi", "idx_images", "idx_labels",         // tests/data
      "bpe_load", "tiktoken", "gpt2_encoder", "gpt2_vocab",                         // tests/text
      "image", "audio"};                                                            // tests/image, tests/audio
  const std::vector<CorruptCase> all = corrupt_cases(known);
  std::ifstream in(corrupt_dir() / "cases.txt");
  int64_t lines = 0;
  for (std::string line; std::getline(in, line);) lines += !line.empty() && line[0] != '#';
  EXPECT_EQ(int64_t(all.size()), lines) << "cases.txt names a reader no test runs";
  EXPECT_GT(lines, 200);
}

}  // namespace
}  // namespace fm::test

// Byte-level BPE with GPT-2's vocabulary: encode and decode throughput on the
// UTF-8 text of tests/fixtures/bpe_gpt2_samples.bin (prose, code, the
// multilingual tutors, and all of it), one thread. Peer: tiktoken's
// encode_ordinary on the same text, bench/peers/bpe_tiktoken.py. Training
// speed on that text is BM_bpe_train.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>

#include "fm/text/bpe.h"

namespace {

namespace fs = std::filesystem;
using fm::text::BpeTokenizer;

fs::path fixture(const std::string& name) { return fs::path(__FILE__).parent_path().parent_path() / "tests" / "fixtures" / name; }

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok =
      BpeTokenizer::from_tiktoken(fixture("gpt2.tiktoken").string(), {{"<|endoftext|>", 50256}});
  return tok;
}

// The samples whose label starts with `category` ("" for all), except those
// of invalid UTF-8 or special tokens (tiktoken's encode_ordinary takes
// neither), concatenated. The file format is described in
// tests/fixtures/make_bpe_fixtures.py; bpe_tiktoken.py selects the same text.
std::string fixture_text(const std::string& category) {
  std::ifstream in(fixture("bpe_gpt2_samples.bin"), std::ios::binary);
  auto get = [&](void* p, size_t n) { in.read(static_cast<char*>(p), static_cast<std::streamsize>(n)); };
  char magic[8];
  uint32_t count = 0;
  get(magic, 8);
  get(&count, 4);
  std::string text;
  for (uint32_t i = 0; i < count && in; ++i) {
    uint16_t label_size = 0;
    uint8_t flags = 0;
    uint32_t size = 0, n_ids = 0;
    get(&label_size, 2);
    std::string label(label_size, '\0');
    get(label.data(), label_size);
    get(&flags, 1);
    get(&size, 4);
    std::string sample(size, '\0');
    get(sample.data(), size);
    get(&n_ids, 4);
    in.ignore(flags & 2 ? 8 : 2 * static_cast<std::streamsize>(n_ids));
    if (label.starts_with(category) && !label.starts_with("invalid") && !label.starts_with("special")) text += sample;
  }
  if (!in || text.empty()) throw std::runtime_error("bench_bpe: cannot read " + fixture("bpe_gpt2_samples.bin").string());
  return text;
}

const char* const kCategories[] = {"", "prose", "code", "multilingual"};

void BM_bpe_encode_gpt2(benchmark::State& state) {
  const std::string category = kCategories[state.range(0)];
  const std::string text = fixture_text(category);
  size_t n_ids = 0;
  for (auto _ : state) {
    const auto ids = gpt2().encode(text);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(state.iterations() * n_ids), benchmark::Counter::kIsRate);
  state.SetLabel((category.empty() ? "all" : category) + ", " + std::to_string(text.size() / 1000) + " kB");
}

void BM_bpe_decode_gpt2(benchmark::State& state) {
  const std::string text = fixture_text("");
  const auto ids = gpt2().encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(gpt2().decode(ids).data());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

// Pre-token counting and 8k merges on the fixture text.
void BM_bpe_train(benchmark::State& state) {
  const std::string text = fixture_text("");
  fm::text::BpeTrainOptions options;
  options.vocab_size = static_cast<int32_t>(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(BpeTokenizer::train(text, options).vocab_size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}

}  // namespace

BENCHMARK(BM_bpe_encode_gpt2)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_bpe_decode_gpt2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_bpe_train)->Arg(8192)->Unit(benchmark::kMillisecond)->Iterations(2)->UseRealTime();

BENCHMARK_MAIN();

// The corrupt-input corpus for libfm::datasets' readers: token shards,
// caption files (CSV/TSV/JSONL), WebDataset tar shards, MIDI and IDX. Each
// source is read whole, sample by sample, as the DataLoader does: a read()
// that throws fm::Error is a skip there, so it is counted as one here. See
// tests/corrupt_cases.h and tests/fixtures/make_corrupt.py.
#include <filesystem>

#include "corrupt_cases.h"
#include "fm/data/idx.h"
#include "fm/data/image_text.h"
#include "fm/data/midi.h"
#include "fm/data/token_shard.h"
#include "fm/data/wds.h"

namespace fm::test {
namespace {

ReadOutcome read_token_shard(const std::string& path) {
  const data::TokenShard shard(path, /*vocab_size=*/50257);  // GPT-2's
  std::vector<int32_t> window(size_t(std::min<int64_t>(shard.size(), 64)));
  shard.copy_window(0, int64_t(window.size()), window.data());
  return {};
}

// Every sample of a source; read errors counted as the DataLoader counts them.
ReadOutcome read_all(const data::ImageTextSource& src) {
  ReadOutcome out{src.skipped(), src.skip_messages()};
  for (int64_t i = 0; i < src.size(); ++i) {
    try {
      (void)src.read(i);
    } catch (const Error& e) {
      ++out.skipped;
      out.messages.push_back(e.what());
    }
  }
  return out;
}

ReadOutcome read_captions(const std::string& path) { return read_all(*data::open_caption_folder(path)); }

#if FM_DATA_ARCHIVES
ReadOutcome read_wds(const std::string& path) { return read_all(*data::open_webdataset({path})); }
#endif

ReadOutcome read_midi(const std::string& path) {
  (void)data::read_midi(path);
  return {};
}

#if FM_DATA_ARCHIVES
// One IDX file with the good partner of the other kind.
ReadOutcome read_idx(const std::string& images, const std::string& labels) {
  return read_all(*data::open_idx(images, labels, data::fashion_mnist_classes()));
}
const std::string kGoodImages = (corrupt_dir() / "idx" / "good_images.idx").string();
const std::string kGoodLabels = (corrupt_dir() / "idx" / "good_labels.idx").string();
#endif

// The WebDataset and IDX readers exist only where libarchive and zlib were found.
const std::map<std::string, CorruptReader> kReaders = {
    {"token_shard", read_token_shard},
    {"captions", read_captions},
    {"midi", read_midi},
#if FM_DATA_ARCHIVES
    {"wds", read_wds},
    {"idx_images", [](const std::string& p) { return read_idx(p, kGoodLabels); }},
    {"idx_labels", [](const std::string& p) { return read_idx(kGoodImages, p); }},
#endif
};

std::vector<std::string> reader_names() {
  std::vector<std::string> names;
  for (const auto& [name, reader] : kReaders) names.push_back(name);
  return names;
}

class CorruptData : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptData, ErrorOrSkipNeverCrash) { run_corrupt_case(GetParam(), kReaders.at(GetParam().reader)); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptData, ::testing::ValuesIn(corrupt_cases(reader_names())), case_name);

}  // namespace
}  // namespace fm::test

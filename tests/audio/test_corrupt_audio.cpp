// The corrupt-input corpus for audio files (WAV, FLAC through libsndfile,
// the rest through FFmpeg): truncated, lying chunk sizes, huge channel
// counts and sample rates, NaN samples. See tests/corrupt_cases.h and
// tests/fixtures/make_corrupt.py.
#include "corrupt_cases.h"
#include "fm/audio/audio.h"

namespace fm::test {
namespace {

ReadOutcome read_audio(const std::string& path) {
  const audio::Audio a = audio::read(path);
  EXPECT_GT(a.frames(), 0);
  return {};
}

class CorruptAudio : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptAudio, ErrorNeverCrash) { run_corrupt_case(GetParam(), read_audio); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptAudio, ::testing::ValuesIn(corrupt_cases({"audio"})), case_name);

}  // namespace
}  // namespace fm::test

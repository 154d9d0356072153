// The corrupt-input corpus for image files (PNG, JPEG, BMP through OpenCV):
// truncated, wrong magic, bad CRC, huge or zero declared dimensions. See
// tests/corrupt_cases.h and tests/fixtures/make_corrupt.py.
#include "corrupt_cases.h"
#include "fm/image/image.h"

namespace fm::test {
namespace {

ReadOutcome read_image(const std::string& path) {
  const image::Image img = image::read(path);
  EXPECT_GT(img.height * img.width, 0);
  return {};
}

class CorruptImages : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptImages, ErrorNeverCrash) { run_corrupt_case(GetParam(), read_image); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptImages, ::testing::ValuesIn(corrupt_cases({"image"})), case_name);

}  // namespace
}  // namespace fm::test

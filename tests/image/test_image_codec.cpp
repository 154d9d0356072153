// fm::image decode/encode/read/write: every layout decode() takes against
// what PIL gives after convert("RGB") (tests/fixtures/make_image_fixtures.py),
// PNG round trips, and corrupt files that must throw fm::Error naming the file.
#include <filesystem>
#include <random>

#include "fm/image/image.h"
#include "fm/io/safetensors.h"
#include "helpers.h"

using namespace fm;
using fm::image::Image;

namespace {

std::string fixture(const std::string& name) {
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / name).string();
}

// Largest |a - b| over the bytes; -1 when the sizes differ.
int max_diff(const Image& a, const Image& b) {
  if (a.height != b.height || a.width != b.width || a.channels != b.channels || a.data.size() != b.data.size())
    return -1;
  int worst = 0;
  for (size_t i = 0; i < a.data.size(); ++i) worst = std::max(worst, std::abs(int(a.data[i]) - int(b.data[i])));
  return worst;
}

Image from_hwc(const Tensor& t) {
  Image img = image::make_image(int(t.size(0)), int(t.size(1)), int(t.size(2)));
  img.data = t.to_vector<uint8_t>();
  return img;
}

Image random_image(int h, int w, int c, uint32_t seed) {
  std::mt19937 rng(seed);
  Image img = image::make_image(h, w, c);
  for (auto& v : img.data) v = uint8_t(rng() & 0xFF);
  return img;
}

struct DecodeCase {
  std::string file;
  int tolerance;  // lossy formats: decoders may differ by a level or two
};

class DecodeTest : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeTest, MatchesPilConvertRgb) {
  static const io::Safetensors expected = io::load_safetensors(fixture("image_decoded.safetensors"));
  const DecodeCase& c = GetParam();
  const Image got = image::read(fixture(c.file));
  const Image want = from_hwc(expected.tensors.at(c.file));
  ASSERT_EQ(got.channels, 3);
  ASSERT_EQ(got.height, 23);
  ASSERT_EQ(got.width, 37);
  const int diff = max_diff(got, want);
  EXPECT_GE(diff, 0);
  EXPECT_LE(diff, c.tolerance) << c.file;
}

INSTANTIATE_TEST_SUITE_P(Files, DecodeTest,
                         ::testing::Values(DecodeCase{"image_rgb.png", 0}, DecodeCase{"image_rgba.png", 0},
                                           DecodeCase{"image_gray.png", 0}, DecodeCase{"image_gray_alpha.png", 0},
                                           DecodeCase{"image_palette.png", 0}, DecodeCase{"image_gray16.png", 0},
                                           DecodeCase{"image_rgb16.png", 0}, DecodeCase{"image_rgba16.png", 0},
                                           DecodeCase{"image_rgb.jpg", 2}, DecodeCase{"image_gray.jpg", 2},
                                           DecodeCase{"image_rgb.webp", 0}, DecodeCase{"image_rgba.webp", 0},
                                           DecodeCase{"image_rgb_lossy.webp", 2}, DecodeCase{"image_rgb.bmp", 0},
                                           DecodeCase{"image_gray.bmp", 0}),
                         [](const auto& info) {
                           std::string name = info.param.file.substr(6);
                           for (char& ch : name)
                             if (ch == '.') ch = '_';
                           return name;
                         });

TEST(ImageCodec, DecodeFromMemoryEqualsRead) {
  const std::string bytes = test::read_file(fixture("image_rgba.png"));
  const Image a = image::decode(bytes.data(), bytes.size(), "member.png");
  EXPECT_EQ(max_diff(a, image::read(fixture("image_rgba.png"))), 0);
}

TEST(ImageCodec, PngRoundTripIsExact) {
  for (int channels : {1, 3}) {
    const Image img = random_image(19, 31, channels, 7 + channels);
    const std::string png = image::encode_png(img);
    ASSERT_GT(png.size(), 8u);
    EXPECT_EQ(png.substr(1, 3), "PNG");
    const Image back = image::decode(png.data(), png.size(), "round trip");
    ASSERT_EQ(back.channels, 3);
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x)
        for (int c = 0; c < 3; ++c) ASSERT_EQ(back.at(y, x, c), img.at(y, x, channels == 1 ? 0 : c));
  }
}

TEST(ImageCodec, JpegRoundTripIsClose) {
  // A smooth image survives quality 95 within a few levels; noise would not.
  Image img = image::make_image(32, 48, 3);
  for (int y = 0; y < 32; ++y)
    for (int x = 0; x < 48; ++x)
      for (int c = 0; c < 3; ++c) img.at(y, x, c) = uint8_t(c == 0 ? x * 5 : c == 1 ? y * 7 : 128);
  const std::string jpg = image::encode_jpeg(img, 95);
  EXPECT_EQ(uint8_t(jpg[0]), 0xFF);
  EXPECT_EQ(uint8_t(jpg[1]), 0xD8);
  const int diff = max_diff(image::decode(jpg.data(), jpg.size(), "q95"), img);
  EXPECT_GE(diff, 0);
  EXPECT_LE(diff, 6);
  // Lower quality gives a smaller file.
  EXPECT_LT(image::encode_jpeg(img, 30).size(), jpg.size());
  test::expect_error([&] { image::encode_jpeg(img, 101); }, "quality");
}

TEST(ImageCodec, EncodeRejectsOtherChannelCounts) {
  const Image rgba = image::make_image(2, 2, 4);
  test::expect_error([&] { image::encode_png(rgba); }, "4 channels");
  Image broken = image::make_image(2, 2, 3);
  broken.data.pop_back();
  test::expect_error([&] { image::encode_png(broken); }, "bytes");
}

class ImageFileTest : public test::TempDirTest {
 protected:
  ImageFileTest() : TempDirTest("fm_image_") {}
};

TEST_F(ImageFileTest, WriteReadsBackAndLeavesNoTempFile) {
  const Image img = random_image(9, 14, 3, 42);
  image::write(path("a.png"), img);
  EXPECT_EQ(max_diff(image::read(path("a.png")), img), 0);
  image::write(path("b.JPEG"), img);  // the extension's case does not matter
  EXPECT_EQ(image::read(path("b.JPEG")).width, 14);
  image::write(path("a.png"), random_image(9, 14, 3, 43));  // replaces
  EXPECT_EQ(max_diff(image::read(path("a.png")), random_image(9, 14, 3, 43)), 0);
  EXPECT_EQ(files_in_dir(), (std::vector<std::string>{"a.png", "b.JPEG"}));
  test::expect_error([&] { image::write(path("c.gif"), img); }, "c.gif");
  test::expect_error([&] { image::write(path("no/such/dir/d.png"), img); }, "d.png");
}

TEST_F(ImageFileTest, CorruptFilesThrowNamingTheFile) {
  const std::string png = test::read_file(fixture("image_rgb.png"));
  const std::string jpg = test::read_file(fixture("image_rgb.jpg"));
  const std::string webp = test::read_file(fixture("image_rgb.webp"));
  std::mt19937 rng(3);
  std::string noise(2000, '\0');
  for (char& ch : noise) ch = char(rng() & 0xFF);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"truncated.png", png.substr(0, png.size() / 2)},
      {"header_only.png", png.substr(0, 40)},
      {"truncated.jpg", jpg.substr(0, jpg.size() * 2 / 3)},
      {"headers_only.jpg", jpg.substr(0, 200)},
      {"truncated.webp", webp.substr(0, webp.size() / 2)},
      {"noise.png", noise},
      {"jpeg_magic_noise.jpg", "\xFF\xD8\xFF" + noise},
      {"empty.png", ""},
  };
  for (const auto& [name, bytes] : cases) {
    test::write_file(path(name), bytes);
    test::expect_error([&] { image::read(path(name)); }, path(name));
    test::expect_error([&] { image::decode(bytes.data(), bytes.size(), name); }, name);
  }
  test::expect_error([&] { image::read(path("missing.png")); }, "missing.png");
}

TEST(ImageCodec, JpegWithTrailingBytesStillDecodes) {
  // Bytes after the end-of-image marker (padding, appended data) are legal.
  const std::string jpg = test::read_file(fixture("image_rgb.jpg")) + std::string(64, '\0');
  EXPECT_EQ(image::decode(jpg.data(), jpg.size(), "padded.jpg").width, 37);
}

}  // namespace

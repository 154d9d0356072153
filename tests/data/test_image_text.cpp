// Image-text readers: caption folders (JSONL, CSV with RFC 4180 quoting, TSV,
// custom columns, errors, missing images), IDX files (plain, gzip, corrupt,
// and Debian's Fashion-MNIST where installed), caption templates.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "fm/data/image_text.h"
#include "fm/error.h"
#include "helpers.h"
#if FM_DATA_ARCHIVES
#include "fm/data/idx.h"
#endif

using namespace fm;
using namespace fm::data;
using fm::test::expect_error;
using fm::test::write_file;
namespace fs = std::filesystem;

namespace {

class ImageText : public fm::test::TempDirTest {
 protected:
  ImageText() : TempDirTest("fm_image_text_") {}

  // Random bytes standing in for an encoded image (nothing here decodes).
  std::string make_image(const std::string& rel, size_t n) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = char(rng_() & 0xFF);
    fs::create_directories(fs::path(path(rel)).parent_path());
    write_file(path(rel), bytes);
    return bytes;
  }
  std::mt19937 rng_{1234};
};

// A field as RFC 4180 writes it: quoted when it holds the separator, a quote,
// or a line break, with quotes doubled.
std::string csv_field(const std::string& s, char sep) {
  if (s.find_first_of(std::string("\"\r\n") + sep) == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

TEST_F(ImageText, JsonlReadsImagesAndCaptionsInOrder) {
  const std::string a = make_image("imgs/a.png", 100), b = make_image("imgs/sub/b.JPG", 0),
                    c = make_image("c.webp", 7);
  write_file(path("captions.jsonl"),
             "{\"file\": \"imgs/a.png\", \"caption\": \"a red \\\"square\\\"\"}\n"
             "\n"
             "{\"file\": \"imgs/sub/b.JPG\", \"caption\": \"caf\u00e9, two words\", \"extra\": 1}\n"
             "{\"file\": \"imgs/missing.png\", \"caption\": \"gone\"}\r\n"
             "{\"file\": \"" + path("c.webp") + "\", \"caption\": \"\"}\n");
  auto src = open_caption_folder(dir_.string());  // the folder: finds captions.jsonl
  ASSERT_EQ(src->size(), 3);
  EXPECT_EQ(src->skipped(), 1);
  ASSERT_EQ(src->skip_messages().size(), 1u);
  EXPECT_NE(src->skip_messages()[0].find("missing.png"), std::string::npos) << src->skip_messages()[0];
  EXPECT_NE(src->skip_messages()[0].find("captions.jsonl:4"), std::string::npos) << src->skip_messages()[0];

  ImageTextSample s = src->read(0);
  EXPECT_EQ(s.image, a);
  EXPECT_EQ(s.caption, "a red \"square\"");
  EXPECT_EQ(s.key, "imgs/a");
  EXPECT_EQ(s.image_format, "png");
  EXPECT_EQ(s.origin, path("imgs/a.png"));
  s = src->read(1);
  EXPECT_EQ(s.image, b);
  EXPECT_EQ(s.caption, "caf\u00e9, two words");
  EXPECT_EQ(s.image_format, "jpg");
  EXPECT_EQ(s.key, "imgs/sub/b");
  s = src->read(2);
  EXPECT_EQ(s.image, c);
  EXPECT_EQ(s.caption, "");
  expect_error([&] { src->read(3); }, "index 3");
}

TEST_F(ImageText, CsvQuotingMatchesAnRfc4180Writer) {
  // Random captions full of separators, quotes and line breaks, written as
  // RFC 4180 prescribes (CRLF line ends, as the RFC's own), must read back as written.
  const std::string alphabet = "ab ,\"\n\t;";
  std::vector<std::string> captions;
  std::string csv = "id,title,filepath\r\n";
  for (int i = 0; i < 40; ++i) {
    std::string caption;
    const size_t n = rng_() % 12;
    for (size_t k = 0; k < n; ++k) caption += alphabet[rng_() % alphabet.size()];
    if (i == 0) caption = "";  // an empty field at the start of a row's fields too
    captions.push_back(caption);
    const std::string file = "img" + std::to_string(i) + ".png";
    make_image(file, 3);
    csv += std::to_string(i) + "," + csv_field(caption, ',') + "," + csv_field(file, ',') + "\r\n";
  }
  write_file(path("data.csv"), csv);
  auto src = open_caption_folder(path("data.csv"));
  ASSERT_EQ(src->size(), 40);
  EXPECT_EQ(src->skipped(), 0);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(src->read(i).caption, captions[size_t(i)]) << "row " << i;
    EXPECT_EQ(src->read(i).key, "img" + std::to_string(i));
  }
}

TEST_F(ImageText, TsvWithOpenClipColumnsAndCustomColumns) {
  const std::string a = make_image("x/1.jpeg", 5);
  make_image("x/2.png", 6);
  // pandas (open_clip) reads quotes that open a field as quoting, others as text.
  write_file(path("captions.tsv"), "title\tfilepath\n\"tab\there\"\tx/1.jpeg\nsay \"hi\"\tx/2.png\n");
  auto src = open_caption_folder(dir_.string());
  ASSERT_EQ(src->size(), 2);
  EXPECT_EQ(src->read(0).caption, "tab\there");
  EXPECT_EQ(src->read(0).image, a);
  EXPECT_EQ(src->read(0).image_format, "jpeg");
  EXPECT_EQ(src->read(1).caption, "say \"hi\"");

  write_file(path("custom.txt"), "image;text\nx/2.png;semi \"quoted\"\n\"x/1.jpeg\";\"a;b\"\n");
  CaptionFolderOptions o;
  o.image_column = "image";
  o.caption_column = "text";
  o.separator = ';';
  auto custom = open_caption_folder(path("custom.txt"), o);
  ASSERT_EQ(custom->size(), 2);
  EXPECT_EQ(custom->read(0).caption, "semi \"quoted\"");
  EXPECT_EQ(custom->read(1).caption, "a;b");
  EXPECT_EQ(custom->read(1).image, a);
}

TEST_F(ImageText, CaptionFileErrorsNameFileAndColumn) {
  make_image("a.png", 1);
  write_file(path("c.csv"), "filepath,caption\na.png,hello\n");
  expect_error([&] { open_caption_folder(path("c.csv")); }, "c.csv: no column 'title'");
  write_file(path("d.csv"), "filepath,title\na.png,\"open quote\n");
  expect_error([&] { open_caption_folder(path("d.csv")); }, "d.csv:2: a quoted field is not closed");
  write_file(path("e.csv"), "filepath,title\na.png,one,two\n");
  expect_error([&] { open_caption_folder(path("e.csv")); }, "e.csv:2: 3 fields");
  write_file(path("f.jsonl"), "{\"file\": \"a.png\", \"caption\": \"ok\"}\n{\"file\": \"a.png\"}\n");
  expect_error([&] { open_caption_folder(path("f.jsonl")); }, "f.jsonl:2: no field \"caption\"");
  write_file(path("g.jsonl"), "{\"file\": \"a.png\", \"caption\": \"ok\"\n");
  expect_error([&] { open_caption_folder(path("g.jsonl")); }, "g.jsonl:1: not JSON");
  fs::create_directories(path("empty"));
  expect_error([&] { open_caption_folder(path("empty")); }, "holds none of captions.jsonl");
  expect_error([&] { open_caption_folder(path("nope.csv")); }, "nope.csv");
}

TEST_F(ImageText, ImageRemovedAfterOpeningIsAReadError) {
  make_image("a.png", 4);
  write_file(path("captions.jsonl"), "{\"file\": \"a.png\", \"caption\": \"x\"}\n");
  auto src = open_caption_folder(dir_.string());
  fs::remove(path("a.png"));
  expect_error([&] { src->read(0); }, "a.png");
}

// ---- IDX (needs zlib: see datasets/CMakeLists.txt) ----
#if FM_DATA_ARCHIVES

std::string be32(uint32_t v) {
  return {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
}

struct IdxData {
  std::string images, labels;
  std::vector<uint8_t> pixels, label_values;
};

IdxData make_idx(std::mt19937& rng, uint32_t n, uint32_t rows, uint32_t cols, int classes) {
  IdxData d;
  d.images = std::string("\0\0\x08\x03", 4) + be32(n) + be32(rows) + be32(cols);
  d.labels = std::string("\0\0\x08\x01", 4) + be32(n);
  for (uint32_t i = 0; i < n * rows * cols; ++i) d.pixels.push_back(uint8_t(rng() & 0xFF));
  for (uint32_t i = 0; i < n; ++i) d.label_values.push_back(uint8_t(rng() % uint32_t(classes)));
  d.images.append(d.pixels.begin(), d.pixels.end());
  d.labels.append(d.label_values.begin(), d.label_values.end());
  return d;
}

void expect_matches(const ImageTextSource& src, const IdxData& d, int rows, int cols,
                    const std::vector<std::string>& classes) {
  ASSERT_EQ(src.size(), int64_t(d.label_values.size()));
  const size_t n = size_t(rows * cols);
  for (int64_t i = 0; i < src.size(); ++i) {
    const ImageTextSample s = src.read(i);
    EXPECT_EQ(s.height, rows);
    EXPECT_EQ(s.width, cols);
    EXPECT_EQ(s.channels, 1);
    EXPECT_TRUE(s.image.empty());
    EXPECT_EQ(s.pixels, std::vector<uint8_t>(d.pixels.begin() + ptrdiff_t(i * n), d.pixels.begin() + ptrdiff_t((i + 1) * n)));
    EXPECT_EQ(s.label, d.label_values[size_t(i)]);
    EXPECT_EQ(s.caption, classes[size_t(s.label)]);
    EXPECT_EQ(s.key, "idx:" + std::to_string(i));
  }
}

TEST_F(ImageText, IdxPlainAndGzipped) {
  const std::vector<std::string> classes = {"zero", "one", "two"};
  const IdxData d = make_idx(rng_, 9, 5, 4, 3);
  write_file(path("img-idx3-ubyte"), d.images);
  write_file(path("lab-idx1-ubyte"), d.labels);
  expect_matches(*open_idx(path("img-idx3-ubyte"), path("lab-idx1-ubyte"), classes), d, 5, 4, classes);

  // gzip as the real files are shipped (GNU gzip, not libfm's own code).
  const std::string cmd = "gzip -k -9 '" + path("img-idx3-ubyte") + "' '" + path("lab-idx1-ubyte") + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  expect_matches(*open_idx(path("img-idx3-ubyte.gz"), path("lab-idx1-ubyte.gz"), classes), d, 5, 4, classes);
  // Without class names the caption is the label.
  auto bare = open_idx(path("img-idx3-ubyte.gz"), path("lab-idx1-ubyte"));
  EXPECT_EQ(bare->read(2).caption, std::to_string(d.label_values[2]));
}

TEST_F(ImageText, IdxErrorsNameTheFile) {
  const IdxData d = make_idx(rng_, 6, 3, 3, 2);
  write_file(path("labels"), d.labels);
  write_file(path("images"), d.images);
  std::string bad = d.images;
  bad[2] = 0x09;  // not unsigned bytes
  write_file(path("bad-magic"), bad);
  expect_error([&] { open_idx(path("bad-magic"), path("labels")); }, "bad-magic: bad magic 0x00000903");
  expect_error([&] { open_idx(path("labels"), path("images")); }, "labels: bad magic 0x00000801");
  write_file(path("short"), d.images.substr(0, d.images.size() - 1));  // one byte missing
  expect_error([&] { open_idx(path("short"), path("labels")); }, "short: the header promises 6 x 3 x 3 = 54 bytes");
  write_file(path("long"), d.images + "x");
  expect_error([&] { open_idx(path("long"), path("labels")); }, "but the file holds 55");
  write_file(path("tiny"), std::string("\0\0\x08", 3));
  expect_error([&] { open_idx(path("tiny"), path("labels")); }, "tiny: 3 bytes");
  const IdxData other = make_idx(rng_, 5, 3, 3, 2);
  write_file(path("labels5"), other.labels);
  expect_error([&] { open_idx(path("images"), path("labels5")); }, "holds 6 images but");
  expect_error([&] { open_idx(path("images"), path("labels"), {"only one"}); }, "has no class name");
  // A gzip stream cut short is an error, not a short file.
  ASSERT_EQ(std::system(("gzip -k '" + path("images") + "'").c_str()), 0);
  const std::string gz = fm::test::read_file(path("images.gz"));
  write_file(path("cut.gz"), gz.substr(0, gz.size() / 2));
  expect_error([&] { open_idx(path("cut.gz"), path("labels")); }, "cut.gz");
  expect_error([&] { open_idx(path("absent"), path("labels")); }, "absent");
}

// Debian's dataset-fashion-mnist; reference values computed by Python's gzip module.
TEST(FashionMnist, DebianFilesReadAsPythonReadsThem) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  if (!fs::exists(dir + "t10k-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto src = open_idx(dir + "t10k-images-idx3-ubyte.gz", dir + "t10k-labels-idx1-ubyte.gz", fashion_mnist_classes());
  ASSERT_EQ(src->size(), 10000);
  const std::vector<int64_t> first_labels = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  for (size_t i = 0; i < first_labels.size(); ++i) EXPECT_EQ(src->read(int64_t(i)).label, first_labels[i]);
  const ImageTextSample s = src->read(0);
  EXPECT_EQ(s.height, 28);
  EXPECT_EQ(s.width, 28);
  EXPECT_EQ(s.caption, "Ankle boot");
  int64_t sum = 0;
  for (uint8_t p : s.pixels) sum += p;
  EXPECT_EQ(sum, 33456);
}

#endif  // FM_DATA_ARCHIVES

TEST(CaptionTemplates, ApplyAndChooseBySeed) {
  EXPECT_EQ(apply_caption_template("a photo of a {}.", "cat"), "a photo of a cat.");
  expect_error([] { apply_caption_template("no slot", "cat"); }, "no {}");
  const auto& t = default_caption_templates();
  ASSERT_GE(t.size(), 5u);
  for (const std::string& s : t) EXPECT_NE(s.find("{}"), std::string::npos) << s;
  EXPECT_EQ(class_caption("dog", 3), apply_caption_template(t[3], "dog"));
  EXPECT_EQ(class_caption("dog", 3 + t.size()), class_caption("dog", 3));
  EXPECT_EQ(class_caption("dog", 1, {"{} x", "y {}"}), "y dog");
}

}  // namespace

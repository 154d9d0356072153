// WebDataset shards: tars written by GNU tar (gnu, pax and ustar formats,
// long names, sizes around the 512-byte block) read back by offset; samples
// without captions, truncated and compressed shards; brace expansion as
// braceexpand; WebDatasetWriter's shards read back by GNU tar and by the reader.
#include <gtest/gtest.h>

#if FM_DATA_ARCHIVES
#include <cstdlib>
#include <filesystem>
#include <random>

#include "fm/data/wds.h"
#include "fm/error.h"
#include "helpers.h"

using namespace fm;
using namespace fm::data;
using fm::test::expect_error;
using fm::test::read_file;
using fm::test::write_file;
namespace fs = std::filesystem;

namespace {

class Wds : public fm::test::TempDirTest {
 protected:
  Wds() : TempDirTest("fm_wds_") {}

  std::string random_bytes(size_t n) {
    std::string b(n, '\0');
    for (char& c : b) c = char(rng_() & 0xFF);
    return b;
  }
  // Writes `files` (name -> bytes, in order) under staging/ and tars them, in
  // that order, with GNU tar in `format`.
  std::string tar(const std::string& shard, const std::vector<std::pair<std::string, std::string>>& files,
                  const std::string& format = "gnu") {
    const std::string staging = path("staging_" + shard);
    std::string names;
    for (const auto& [name, bytes] : files) {
      fs::create_directories(fs::path(staging + "/" + name).parent_path());
      write_file(staging + "/" + name, bytes);
      names += " '" + name + "'";
    }
    const std::string cmd = "tar --format=" + format + " -cf '" + path(shard) + "' -C '" + staging + "'" + names;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return path(shard);
  }
  std::mt19937 rng_{77};
};

TEST_F(Wds, GnuTarShardsReadByOffset) {
  const std::string long_dir = std::string(120, 'd') + "/";  // forces GNU long names / pax path records
  for (const std::string format : {"gnu", "pax", "ustar"}) {
    SCOPED_TRACE(format);
    const std::string dir = format == "ustar" ? "sub/" : long_dir;
    std::vector<std::pair<std::string, std::string>> files;
    struct Expected {
      std::string key, image, format, caption;
      int64_t label;
    };
    std::vector<Expected> expected;
    const size_t sizes[] = {0, 1, 511, 512, 513, 1024, 10000, 10240, 20481};
    for (int i = 0; i < 9; ++i) {
      char key[16];
      std::snprintf(key, sizeof key, "%06d", i);
      const std::string k = (i % 3 == 2 ? dir : std::string()) + key;
      const std::string ext = i % 2 ? "png" : "jpg";
      const std::string image = random_bytes(sizes[i]);
      const std::string caption = "caption " + std::to_string(i) + " \u00e9";
      files.emplace_back(k + "." + ext, image);
      if (i % 4 == 1) {
        files.emplace_back(k + ".json", "{\"caption\": \"" + caption + "\", \"w\": 3}");
        files.emplace_back(k + ".cls", " " + std::to_string(i * 10) + "\n");
      } else {
        files.emplace_back(k + ".txt", caption);
      }
      expected.push_back({k, image, ext, caption, i % 4 == 1 ? i * 10 : -1});
    }
    const std::string shard = tar("s_" + format + ".tar", files, format);
    auto src = open_webdataset({shard});
    ASSERT_EQ(src->size(), 9);
    EXPECT_EQ(src->skipped(), 0);
    for (int64_t i = 0; i < 9; ++i) {
      const ImageTextSample s = src->read(i);
      const Expected& e = expected[size_t(i)];
      EXPECT_EQ(s.key, e.key);
      EXPECT_EQ(s.image, e.image) << "sample " << i;
      EXPECT_EQ(s.image_format, e.format);
      EXPECT_EQ(s.caption, e.caption);
      EXPECT_EQ(s.label, e.label);
      EXPECT_EQ(s.origin, shard + ":" + e.key + "." + e.format);
    }
  }
}

TEST_F(Wds, SamplesWithoutImageOrCaptionAreCountedSkips) {
  const std::string shard = tar("a.tar", {{"k1.jpg", "img1"},
                                          {"k1.txt", "one"},
                                          {"k2.png", "img2"},  // no caption
                                          {"k2.meta", "x"},
                                          {"k3.txt", "caption only"},
                                          {"README", "no extension: not part of a sample"},
                                          {"k4.seg.png", "not the image"},  // extension "seg.png"
                                          {"k4.WEBP", "img4"},
                                          {"k4.TXT", "four"},
                                          {"k5.jpg", "img5"},
                                          {"k5.json", "{\"text\": \"wrong field\"}"}});
  auto src = open_webdataset({shard});
  ASSERT_EQ(src->size(), 3);
  EXPECT_EQ(src->skipped(), 2);
  ASSERT_EQ(src->skip_messages().size(), 2u);
  EXPECT_NE(src->skip_messages()[0].find("a.tar:k2: no caption"), std::string::npos) << src->skip_messages()[0];
  EXPECT_NE(src->skip_messages()[1].find("a.tar:k3: no image"), std::string::npos) << src->skip_messages()[1];
  EXPECT_EQ(src->read(1).image, "img4");
  EXPECT_EQ(src->read(1).image_format, "webp");
  EXPECT_EQ(src->read(1).caption, "four");
  expect_error([&] { src->read(2); }, "a.tar:k5.json: no string field \"caption\"");
  WdsOptions o;
  o.json_caption_field = "text";
  EXPECT_EQ(open_webdataset({shard}, o)->read(2).caption, "wrong field");
}

TEST_F(Wds, TruncatedShardKeepsWhatIsWhole) {
  std::vector<std::pair<std::string, std::string>> files;
  for (int i = 0; i < 4; ++i) {
    files.emplace_back("s" + std::to_string(i) + ".png", random_bytes(3000));
    files.emplace_back("s" + std::to_string(i) + ".txt", "c" + std::to_string(i));
  }
  const std::string whole = read_file(tar("whole.tar", files));
  // Cut in the middle of sample 2's image data: headers of s0, s1 (4 members
  // of 512 + 3072 or 512 + 512 bytes), then s2.png's header and part of its data.
  const size_t s2_data = 2 * (512 + 3072 + 512 + 512) + 512;
  write_file(path("cut.tar"), whole.substr(0, s2_data + 1000));
  auto src = open_webdataset({path("cut.tar")});
  ASSERT_EQ(src->size(), 2);
  EXPECT_EQ(src->read(1).caption, "c1");
  ASSERT_GE(src->skipped(), 1);
  EXPECT_NE(src->skip_messages()[0].find("cut.tar:s2.png: truncated"), std::string::npos) << src->skip_messages()[0];

  // Cut inside a header: the members before it are used, the cut is reported.
  write_file(path("cut_header.tar"), whole.substr(0, 2 * (512 + 3072 + 512 + 512) + 100));
  auto src2 = open_webdataset({path("cut_header.tar")});
  EXPECT_EQ(src2->size(), 2);
  ASSERT_GE(src2->skipped(), 1);
  EXPECT_NE(src2->skip_messages().back().find("cut_header.tar"), std::string::npos);

  // Nothing readable: an error naming the shard.
  write_file(path("stub.tar"), whole.substr(0, 100));
  expect_error([&] { open_webdataset({path("stub.tar")}); }, "stub.tar");
  write_file(path("junk.tar"), random_bytes(5000));
  expect_error([&] { open_webdataset({path("junk.tar")}); }, "junk.tar");

  // A file cut after opening: reading the member is an error naming it.
  write_file(path("later.tar"), whole);
  auto src3 = open_webdataset({path("later.tar")});
  fs::resize_file(path("later.tar"), 512 + 100);
  expect_error([&] { src3->read(0); }, "later.tar:s0.png: truncated");
}

TEST_F(Wds, ShardListsAndBraces) {
  for (int s = 0; s < 3; ++s)
    tar("data-" + std::to_string(s) + ".tar",
        {{"a" + std::to_string(s) + ".jpg", "i"}, {"a" + std::to_string(s) + ".txt", "shard " + std::to_string(s)}});
  auto src = open_webdataset({path("data-{0..2}.tar")});
  ASSERT_EQ(src->size(), 3);
  for (int s = 0; s < 3; ++s) EXPECT_EQ(src->read(s).caption, "shard " + std::to_string(s));
  EXPECT_EQ(open_webdataset({path("data-{2,0}.tar"), path("data-1.tar")})->read(0).caption, "shard 2");
  expect_error([&] { open_webdataset({}); }, "no shards");
  expect_error([&] { open_webdataset({path("data-{0..3}.tar")}); }, "data-3.tar");
  // Compressed shards cannot be read by offset.
  ASSERT_EQ(std::system(("gzip -k '" + path("data-0.tar") + "'").c_str()), 0);
  expect_error([&] { open_webdataset({path("data-0.tar.gz")}); }, "data-0.tar.gz' is compressed (gzip)");
}

TEST(BraceExpansion, AsBraceexpand) {
  using V = std::vector<std::string>;
  EXPECT_EQ(expand_braces("plain.tar"), V{"plain.tar"});
  EXPECT_EQ(expand_braces("d-{000..003}.tar"), (V{"d-000.tar", "d-001.tar", "d-002.tar", "d-003.tar"}));
  EXPECT_EQ(expand_braces("{8..11}"), (V{"8", "9", "10", "11"}));
  EXPECT_EQ(expand_braces("{08..11}"), (V{"08", "09", "10", "11"}));
  EXPECT_EQ(expand_braces("{3..1}"), (V{"3", "2", "1"}));
  EXPECT_EQ(expand_braces("{0..10..4}"), (V{"0", "4", "8"}));
  EXPECT_EQ(expand_braces("{-1..1}"), (V{"-1", "0", "1"}));
  EXPECT_EQ(expand_braces("{a..c}"), (V{"a", "b", "c"}));
  EXPECT_EQ(expand_braces("{a,b}{1,2}"), (V{"a1", "a2", "b1", "b2"}));
  EXPECT_EQ(expand_braces("x{a,{b,c}d}y"), (V{"xay", "xbdy", "xcdy"}));
  EXPECT_EQ(expand_braces("{a,}b"), (V{"ab", "b"}));
  EXPECT_EQ(expand_braces("{x}"), V{"{x}"});
  EXPECT_EQ(expand_braces("\\{a,b\\}"), V{"{a,b}"});
  EXPECT_EQ(expand_braces("{0..1}-{a..b}"), (V{"0-a", "0-b", "1-a", "1-b"}));
  expect_error([] { expand_braces("a{b"); }, "'a{b': unbalanced");
  expect_error([] { expand_braces("a}b"); }, "unbalanced");
}

TEST_F(Wds, WriterRoundTripThroughGnuTarAndTheReader) {
  std::vector<ImageTextSample> samples;
  for (int i = 0; i < 7; ++i) {
    ImageTextSample s;
    char key[16];
    std::snprintf(key, sizeof key, "%06d", i);
    s.key = key;
    s.image = random_bytes(size_t(i) * 300);
    s.image = s.image.empty() ? std::string("x") : s.image;
    s.image_format = i % 2 ? "png" : "jpg";
    s.caption = "a caption, number " + std::to_string(i);
    s.label = i % 3 == 0 ? i : -1;
    samples.push_back(s);
  }
  auto write_all = [&](const std::string& dir) {
    WebDatasetWriter w(path(dir), "train", 3);
    for (const ImageTextSample& s : samples) w.write(s);
    EXPECT_EQ(w.samples_written(), 7);
    return w.close();
  };
  const std::vector<std::string> shards = write_all("out");
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0], path("out/train-000000.tar"));
  EXPECT_EQ(shards[2], path("out/train-000002.tar"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(path("out"))) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"train-000000.tar", "train-000001.tar", "train-000002.tar"}));  // no temp files

  // GNU tar lists the members in order and extracts the same bytes.
  const std::string list = path("list.txt");
  ASSERT_EQ(std::system(("tar -tf '" + shards[0] + "' > '" + list + "'").c_str()), 0);
  EXPECT_EQ(read_file(list), "000000.jpg\n000000.txt\n000000.cls\n000001.png\n000001.txt\n000002.jpg\n000002.txt\n");
  ASSERT_EQ(std::system(("tar -xOf '" + shards[1] + "' 000004.jpg > '" + path("x.jpg") + "'").c_str()), 0);
  EXPECT_EQ(read_file(path("x.jpg")), samples[4].image);

  auto src = open_webdataset({path("out/train-{000000..000002}.tar")});
  ASSERT_EQ(src->size(), 7);
  for (int64_t i = 0; i < 7; ++i) {
    const ImageTextSample s = src->read(i);
    EXPECT_EQ(s.key, samples[size_t(i)].key);
    EXPECT_EQ(s.image, samples[size_t(i)].image);
    EXPECT_EQ(s.image_format, samples[size_t(i)].image_format);
    EXPECT_EQ(s.caption, samples[size_t(i)].caption);
    EXPECT_EQ(s.label, samples[size_t(i)].label);
  }
  // The same samples give the same bytes.
  const std::vector<std::string> again = write_all("again");
  for (size_t s = 0; s < 3; ++s) EXPECT_EQ(read_file(again[s]), read_file(shards[s]));
}

TEST_F(Wds, WriterRejectsBadSamples) {
  WebDatasetWriter w(path("out"), "x", 10);
  ImageTextSample s;
  s.key = "a.b";
  s.image = "i";
  s.image_format = "png";
  expect_error([&] { w.write(s); }, "key 'a.b'");
  s.key = "a";
  s.image.clear();
  s.pixels = {1, 2, 3};
  expect_error([&] { w.write(s); }, "raw pixels");
  s.image = "i";
  w.write(s);
  expect_error([&] { w.write(s); }, "key 'a' written twice");
  // An unfinished writer leaves no shard behind.
}

TEST_F(Wds, UnclosedWriterLeavesNoShard) {
  {
    WebDatasetWriter w(path("out"), "x", 10);
    ImageTextSample s;
    s.key = "k";
    s.image = "i";
    s.image_format = "png";
    w.write(s);
  }
  EXPECT_TRUE(fs::is_empty(path("out")));
}

}  // namespace
#else
TEST(Wds, NeedsLibarchive) { GTEST_SKIP() << "libfm::datasets was built without libarchive and zlib"; }
#endif

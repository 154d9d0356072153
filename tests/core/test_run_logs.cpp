// Run logs: CRC-32C, TensorBoard event files (byte layout, parse-back, and
// TensorBoard's own reader when it is installed) and metrics.jsonl.
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "fm/error.h"
#include "fm/io/event_writer.h"
#include "fm/io/metrics_log.h"
#include "helpers.h"

using namespace fm;
using namespace fm::io;
using fm::test::read_file;
using fm::test::write_file;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

class RunLogs : public fm::test::TempDirTest {
 protected:
  RunLogs() : TempDirTest("fm_run_logs_") {}
};

std::vector<std::string> lines_of(const fs::path& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

uint64_t le(const std::string& bytes, size_t offset, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | uint8_t(bytes[offset + i]);
  return v;
}

// The payloads of a file of TFRecords, each length and CRC checked.
std::vector<std::string> read_records(const fs::path& path) {
  const std::string bytes = read_file(path);
  std::vector<std::string> payloads;
  size_t pos = 0;
  while (pos < bytes.size()) {
    EXPECT_LE(pos + 12, bytes.size()) << "truncated header at " << pos;
    if (pos + 12 > bytes.size()) break;
    const uint64_t length = le(bytes, pos, 8);
    EXPECT_EQ(le(bytes, pos + 8, 4), masked_crc32c(bytes.data() + pos, 8)) << "length CRC at " << pos;
    EXPECT_LE(pos + 12 + length + 4, bytes.size()) << "truncated record at " << pos;
    if (pos + 12 + length + 4 > bytes.size()) break;
    const std::string payload = bytes.substr(pos + 12, length);
    EXPECT_EQ(le(bytes, pos + 12 + length, 4), masked_crc32c(payload.data(), payload.size()))
        << "payload CRC at " << pos;
    payloads.push_back(payload);
    pos += 12 + length + 4;
  }
  return payloads;
}

// A protobuf message's top-level fields: number -> varint value, or raw
// bytes for fixed and length-delimited ones (enough for Event).
struct Fields {
  std::map<int, uint64_t> varints;
  std::map<int, std::string> bytes;
};

Fields parse_fields(const std::string& m) {
  Fields f;
  size_t pos = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0; pos < m.size(); shift += 7) {
      const uint8_t b = uint8_t(m[pos++]);
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  };
  while (pos < m.size()) {
    const uint64_t key = varint();
    const int field = int(key >> 3);
    switch (key & 7) {
      case 0:
        f.varints[field] = varint();
        break;
      case 1:
        f.bytes[field] = m.substr(pos, 8), pos += 8;
        break;
      case 5:
        f.bytes[field] = m.substr(pos, 4), pos += 4;
        break;
      case 2: {
        const uint64_t n = varint();
        f.bytes[field] = m.substr(pos, n);
        pos += n;
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (key & 7);
        return f;
    }
  }
  return f;
}

std::vector<fs::path> event_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with("events.out.tfevents.")) files.push_back(e.path());
  return files;
}

// Smallest files the writer accepts: a PNG signature and a RIFF/WAVE header, then filler.
std::vector<uint8_t> fake_png() {
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  for (int i = 0; i < 200; ++i) b.push_back(uint8_t(i * 7));
  return b;
}
std::vector<uint8_t> fake_wav() {
  std::vector<uint8_t> b = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'A', 'V', 'E'};
  for (int i = 0; i < 100; ++i) b.push_back(uint8_t(255 - i));
  return b;
}

std::string hex(const std::vector<uint8_t>& bytes) {
  std::string s;
  for (uint8_t b : bytes) s += "0123456789abcdef"[b >> 4], s += "0123456789abcdef"[b & 15];
  return s;
}

fs::path fixtures_dir() {
  if (const char* src = std::getenv("FM_SOURCE_DIR")) return fs::path(src) / "tests" / "fixtures";
  return fs::path(__FILE__).parent_path().parent_path() / "fixtures";
}

bool shell_succeeds(const std::string& command) { return std::system((command + " > /dev/null 2>&1").c_str()) == 0; }

// ---------------------------------------------------------------- CRC-32C

uint32_t crc32c_bitwise(const std::vector<uint8_t>& data) {
  uint32_t crc = 0xFFFFFFFF;
  for (uint8_t byte : data) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 (iSCSI), appendix B.4.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), ascending(32);
  for (int i = 0; i < 32; ++i) ascending[i] = uint8_t(i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(ascending.data(), 32), 0x46DD794Eu);
}

TEST(Crc32c, MatchesBitwiseOnRandomData) {
  std::mt19937 rng(42);
  for (size_t n : {1, 2, 3, 7, 8, 63, 64, 65, 1000, 4097}) {
    std::vector<uint8_t> data(n);
    for (auto& b : data) b = uint8_t(rng());
    EXPECT_EQ(crc32c(data.data(), n), crc32c_bitwise(data)) << n << " bytes";
  }
}

TEST(Crc32c, Masked) {
  const uint32_t crc = 0xE3069283;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(Crc32c, TfrecordFraming) {
  const std::string record = tfrecord("abc");
  ASSERT_EQ(record.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(record.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(le(record, 8, 4), masked_crc32c(record.data(), 8));
  EXPECT_EQ(record.substr(12, 3), "abc");
  EXPECT_EQ(le(record, 15, 4), masked_crc32c("abc", 3));
}

// ---------------------------------------------------------------- EventWriter

TEST_F(RunLogs, EventFileName) {
  EventWriter writer((dir_ / "run").string());
  const std::string name = fs::path(writer.path()).filename().string();
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  const std::string suffix = "." + std::string(host) + "." + std::to_string(::getpid()) + ".";
  ASSERT_TRUE(name.starts_with("events.out.tfevents.")) << name;
  EXPECT_NE(name.find(suffix), std::string::npos) << name;
  const int64_t unix_time = std::stoll(name.substr(std::string("events.out.tfevents.").size()));
  EXPECT_NEAR(double(unix_time), now_seconds(), 5.0);
  EXPECT_EQ(fs::path(writer.path()).parent_path(), dir_ / "run");
}

// The bytes of the file_version event and of one scalar event, by hand. Only
// the 8 bytes of each wall_time are taken from the file (and range-checked);
// the CRCs of the lengths were computed with TensorBoard's Python crc32c.
TEST_F(RunLogs, ScalarEventBytes) {
  const double before = now_seconds();
  std::string path;
  {
    EventWriter writer(dir_.string());
    writer.add_scalar("loss", 0.5, 300);
    path = writer.path();
  }
  const double after = now_seconds();
  const std::string bytes = read_file(path);

  auto check_wall_time = [&](size_t offset) {
    const double t = std::bit_cast<double>(le(bytes, offset, 8));
    EXPECT_GE(t, before);
    EXPECT_LE(t, after);
    return bytes.substr(offset, 8);
  };
  auto append_crc = [](std::string& out, const std::string& payload) {
    const uint32_t crc = masked_crc32c(payload.data(), payload.size());
    for (int i = 0; i < 4; ++i) out += char(crc >> (8 * i));
  };
  // Record 1: length 24 and its masked CRC, then the Event.
  std::string expected = std::string("\x18\0\0\0\0\0\0\0", 8) + "\xa3\x7f\x4b\x22";
  std::string payload = "\x09" + check_wall_time(13) +  // wall_time (field 1, fixed64)
                        "\x1a\x0d"                      // file_version (3), 13 bytes
                        "brain.Event:2";
  expected += payload;
  append_crc(expected, payload);
  // Record 2: length 27 and its masked CRC, then the Event.
  const size_t second = expected.size();
  expected += std::string("\x1b\0\0\0\0\0\0\0", 8) + "\x1a\x0d\x9e\x13";
  payload = "\x09" + check_wall_time(second + 13) +  // wall_time
            "\x10\xac\x02"                           // step (2): varint 300
            "\x2a\x0d"                               // summary (5), 13 bytes
            "\x0a\x0b"                               // Summary.value (1), 11 bytes
            "\x0a\x04"                               // Value.tag (1), 4 bytes
            "loss" +
            std::string("\x15\0\0\0\x3f", 5);  // Value.simple_value (2, fixed32): 0.5f
  ASSERT_EQ(payload.size(), 27u);
  expected += payload;
  append_crc(expected, payload);
  EXPECT_EQ(bytes, expected);
}

TEST_F(RunLogs, RecordsParseBack) {
  EventWriter writer(dir_.string());
  for (int step = 0; step < 5; ++step) writer.add_scalar("train/loss", 3.0 - step, step);
  writer.add_text("samples/text", "a *markdown* sample", 5);
  writer.add_image_png("samples/image", fake_png(), 4, 6, 6);
  writer.add_audio_wav("samples/audio", fake_wav(), 16000, 1, 44, 7);
  writer.add_scalar("train/loss", 1.0, -1);  // a negative step is a 10-byte varint
  writer.flush();

  const std::vector<std::string> records = read_records(writer.path());
  ASSERT_EQ(records.size(), 10u);
  EXPECT_EQ(parse_fields(records[0]).bytes[3], "brain.Event:2");
  const std::vector<int64_t> steps = {0, 1, 2, 3, 4, 5, 6, 7, -1};
  for (size_t i = 1; i < records.size(); ++i) {
    Fields event = parse_fields(records[i]);
    EXPECT_EQ(int64_t(event.varints[2]), steps[i - 1]) << "record " << i;
    Fields value = parse_fields(parse_fields(event.bytes[5]).bytes[1]);  // Event.summary.value[0]
    EXPECT_FALSE(value.bytes[1].empty()) << "record " << i << " has no tag";
  }
  Fields scalar = parse_fields(parse_fields(parse_fields(records[3]).bytes[5]).bytes[1]);
  EXPECT_EQ(scalar.bytes[1], "train/loss");
  EXPECT_EQ(std::bit_cast<float>(uint32_t(le(scalar.bytes[2], 0, 4))), 1.0f);
}

TEST_F(RunLogs, TwoWritersWriteTwoFiles) {
  EventWriter a(dir_.string()), b(dir_.string());
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(event_files(dir_).size(), 2u);
}

TEST_F(RunLogs, RejectsWhatIsNotPngOrWav) {
  EventWriter writer(dir_.string());
  const std::vector<uint8_t> raw_pixels(48, 0);
  try {
    writer.add_image_png("img", raw_pixels, 4, 4, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(writer.path()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a PNG"), std::string::npos) << e.what();
  }
  EXPECT_THROW(writer.add_image_png("img", fake_png(), 0, 4, 0), Error);
  EXPECT_THROW(writer.add_audio_wav("snd", raw_pixels, 16000, 1, 10, 0), Error);
  EXPECT_THROW(writer.add_audio_wav("snd", fake_wav(), 0, 1, 10, 0), Error);
  writer.flush();
  EXPECT_EQ(read_records(writer.path()).size(), 1u);  // nothing but the file_version
}

TEST_F(RunLogs, UnwritableRunDirNamesIt) {
  write_file(dir_ / "file", "x");
  try {
    EventWriter writer((dir_ / "file" / "run").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir_ / "file" / "run").string()), std::string::npos) << e.what();
  }
}

// TensorBoard's own reader loads what EventWriter wrote.
TEST_F(RunLogs, TensorBoardReadsEvents) {
  if (!shell_succeeds("python3 -c 'import tensorboard'"))
    GTEST_SKIP() << "python3 with the tensorboard package is not available (pip install tensorboard)";
  const std::vector<double> losses = {2.5, 0.1, 1e-8, 123456.789};
  {
    EventWriter writer(dir_.string());
    for (size_t i = 0; i < losses.size(); ++i) writer.add_scalar("train/loss", losses[i], int64_t(i) * 10);
    writer.add_scalar("lr", 3e-4, 0);
    writer.add_text("samples/text", "Once upon a time, **ünïcode** too", 20);
    writer.add_image_png("samples/image", fake_png(), 32, 48, 20);
    writer.add_audio_wav("samples/audio", fake_wav(), 22050, 1, 50, 30);
  }
  const fs::path out = dir_ / "tb.json";
  const std::string script = (fixtures_dir() / "read_tb_events.py").string();
  ASSERT_EQ(std::system(("python3 -B '" + script + "' '" + dir_.string() + "' > '" + out.string() + "'").c_str()), 0);
  const json tb = json::parse(read_file(out));

  EXPECT_EQ(tb["file_versions"], json::array({"brain.Event:2"}));
  const json& loss = tb["scalars"]["train/loss"];
  ASSERT_EQ(loss.size(), losses.size());
  for (size_t i = 0; i < losses.size(); ++i) {
    EXPECT_EQ(loss[i][0].get<int64_t>(), int64_t(i) * 10);
    EXPECT_EQ(loss[i][1].get<double>(), double(float(losses[i])));  // stored as float32, exactly
  }
  EXPECT_EQ(tb["scalars"]["lr"][0][1].get<double>(), double(3e-4f));
  EXPECT_EQ(tb["text"]["samples/text"], json::parse(R"([[20, "Once upon a time, **ünïcode** too"]])"));
  EXPECT_EQ(tb["images"]["samples/image"], json::array({json::array({20, 32, 48, hex(fake_png())})}));
  const json& audio = tb["audio"]["samples/audio"][0];
  EXPECT_EQ(audio[0], 30);
  EXPECT_EQ(audio[1].get<double>(), 22050.0);
  EXPECT_EQ(audio[2], "audio/wav");
  EXPECT_EQ(audio[3], 50);
  EXPECT_EQ(audio[4], hex(fake_wav()));
}

// ---------------------------------------------------------------- MetricsLog

TEST_F(RunLogs, MetricsLinesInFixedOrder) {
  const fs::path path = dir_ / "run" / "metrics.jsonl";
  {
    MetricsLog log(path.string());
    log.log(1, {{"train_loss", 2.5}, {"lr", 3e-4}, {"tokens_per_s", 12345}});
    log.log(2, {{"train_loss", 2.25}});
    log.log(3, {});
  }
  const std::vector<std::string> lines = lines_of(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], R"({"step":1,"lr":0.0003,"tokens_per_s":12345.0,"train_loss":2.5})");
  EXPECT_EQ(lines[1], R"({"step":2,"train_loss":2.25})");
  EXPECT_EQ(lines[2], R"({"step":3})");
  for (const std::string& line : lines) {
    const nlohmann::ordered_json record = nlohmann::ordered_json::parse(line);
    EXPECT_EQ(record.begin().key(), "step");
  }
  EXPECT_EQ(json::parse(lines[0])["lr"].get<double>(), 3e-4);  // doubles round-trip
}

TEST_F(RunLogs, MetricsNonFiniteIsNull) {
  const fs::path path = dir_ / "metrics.jsonl";
  {
    MetricsLog log(path.string());
    log.log(7, {{"a", NAN}, {"b", INFINITY}, {"c", -INFINITY}, {"d", 1.0}});
  }
  const json record = json::parse(lines_of(path).at(0));
  EXPECT_TRUE(record["a"].is_null());
  EXPECT_TRUE(record["b"].is_null());
  EXPECT_TRUE(record["c"].is_null());
  EXPECT_EQ(record["d"], 1.0);
}

TEST_F(RunLogs, MetricsRejectsStepAsValueName) {
  MetricsLog log((dir_ / "metrics.jsonl").string());
  EXPECT_THROW(log.log(1, {{"step", 1.0}}), Error);
}

TEST_F(RunLogs, MetricsAppendsAcrossOpens) {
  const fs::path path = dir_ / "metrics.jsonl";
  MetricsLog(path.string()).log(1, {{"x", 1}});
  MetricsLog(path.string()).log(2, {{"x", 2}});
  EXPECT_EQ(lines_of(path), (std::vector<std::string>{R"({"step":1,"x":1.0})", R"({"step":2,"x":2.0})"}));
}

// A run directory deleted mid-run: the next line is an error naming the file, not a write to nowhere.
TEST_F(RunLogs, MetricsRemovedFileIsAnError) {
  const fs::path path = dir_ / "metrics.jsonl";
  MetricsLog log(path.string());
  log.log(1, {{"x", 1}});
  fs::remove(path);
  try {
    log.log(2, {{"x", 2}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ": the file was removed"), std::string::npos) << e.what();
  }
}

TEST_F(RunLogs, MetricsCutsTornLastLine) {
  const fs::path path = dir_ / "metrics.jsonl";
  write_file(path, "{\"step\":1,\"x\":1.0}\n{\"step\":2,\"x\":2.0}\n{\"step\":3,\"x");
  MetricsLog(path.string()).log(3, {{"x", 3}});
  EXPECT_EQ(read_file(path), "{\"step\":1,\"x\":1.0}\n{\"step\":2,\"x\":2.0}\n{\"step\":3,\"x\":3.0}\n");

  // A torn line longer than the backward scan's buffer, and a file that is all torn line.
  write_file(path, "{\"step\":1}\n{\"step\":2,\"text\":\"" + std::string(10000, 'a'));
  MetricsLog(path.string()).log(2, {});
  EXPECT_EQ(read_file(path), "{\"step\":1}\n{\"step\":2}\n");
  write_file(path, std::string(10000, 'b'));
  MetricsLog(path.string()).log(1, {});
  EXPECT_EQ(read_file(path), "{\"step\":1}\n");
}

TEST_F(RunLogs, MetricsResumeDropsLaterSteps) {
  const fs::path path = dir_ / "metrics.jsonl";
  {
    MetricsLog log(path.string());
    for (int step = 1; step <= 10; ++step) log.log(step, {{"loss", 10.0 - step}});
  }
  std::ofstream(path, std::ios::app) << "{\"step\":11,\"lo";  // killed mid-line
  {
    MetricsLog log(path.string(), 6);  // resumed from the checkpoint at step 6
    for (int step = 6; step <= 8; ++step) log.log(step, {{"loss", 10.0 - step}});
  }
  const std::vector<std::string> lines = lines_of(path);
  ASSERT_EQ(lines.size(), 8u);
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(json::parse(lines[i])["step"], int64_t(i) + 1);
  EXPECT_EQ(read_file(path).back(), '\n');

  MetricsLog(path.string(), 100).log(9, {});  // nothing to drop
  EXPECT_EQ(lines_of(path).size(), 9u);
  MetricsLog((dir_ / "new" / "metrics.jsonl").string(), 5).log(5, {});  // no file yet
  EXPECT_EQ(lines_of(dir_ / "new" / "metrics.jsonl").size(), 1u);
}

TEST_F(RunLogs, MetricsResumeRejectsABadLine) {
  const fs::path path = dir_ / "metrics.jsonl";
  write_file(path, "{\"step\":1}\nnot json\n{\"step\":3}\n");
  try {
    MetricsLog log(path.string(), 2);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ": line 2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), "{\"step\":1}\nnot json\n{\"step\":3}\n");  // untouched
}

}  // namespace

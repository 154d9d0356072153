#include "fm/io/event_writer.h"

#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "fm/error.h"

namespace fm::io {
namespace {

// The few protobuf encodings the Event messages need. Fields are written in
// field-number order, as protobuf itself does, so the bytes match its output
// (but for a step of 0, which protobuf would leave out as the default).
class Proto {
 public:
  Proto& varint(int field, uint64_t v) {
    key(field, 0);
    put_varint(v);
    return *this;
  }
  Proto& float32(int field, float v) {
    key(field, 5);
    put_fixed(std::bit_cast<uint32_t>(v), 4);
    return *this;
  }
  Proto& float64(int field, double v) {
    key(field, 1);
    put_fixed(std::bit_cast<uint64_t>(v), 8);
    return *this;
  }
  Proto& bytes(int field, std::string_view v) {
    key(field, 2);
    put_varint(v.size());
    out_.append(v);
    return *this;
  }
  Proto& bytes(int field, std::span<const uint8_t> v) {
    return bytes(field, std::string_view(reinterpret_cast<const char*>(v.data()), v.size()));
  }
  Proto& message(int field, const Proto& m) { return bytes(field, m.out_); }

  const std::string& str() const { return out_; }

 private:
  void key(int field, int wire_type) { put_varint(uint64_t(field) << 3 | uint64_t(wire_type)); }
  void put_varint(uint64_t v) {
    for (; v >= 0x80; v >>= 7) out_.push_back(char(v | 0x80));
    out_.push_back(char(v));
  }
  void put_fixed(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(char((v >> (8 * i)) & 0xFF));
  }

  std::string out_;
};

// Field numbers from tensorboard/compat/proto/{event,summary,tensor,tensor_shape}.proto;
// those of the small nested messages are written at their use.
enum EventField { kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5 };
enum ValueField { kTag = 1, kSimpleValue = 2, kImage = 4, kAudio = 6, kTensor = 8, kMetadata = 9 };
constexpr int kDtString = 7;  // tensorboard.DataType DT_STRING

double wall_time_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string event_file_name() {
  static std::atomic<uint64_t> counter{0};  // two writers in one second get different names
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  return "events.out.tfevents." + std::to_string(int64_t(wall_time_now())) + "." + host + "." +
         std::to_string(::getpid()) + "." + std::to_string(counter++);
}

// Event{wall_time, step, summary: Summary{value: [value]}}
std::string summary_event(int64_t step, const Proto& value) {
  return Proto()
      .float64(kWallTime, wall_time_now())
      .varint(kStep, uint64_t(step))
      .message(kSummary, Proto().message(1, value))
      .str();
}

bool starts_with(std::span<const uint8_t> data, std::string_view prefix, size_t offset = 0) {
  return data.size() >= offset + prefix.size() && std::memcmp(data.data() + offset, prefix.data(), prefix.size()) == 0;
}

}  // namespace

EventWriter::EventWriter(const std::string& run_dir) {
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) error("EventWriter: cannot create run directory ", run_dir, ": ", ec.message());
  path_ = (std::filesystem::path(run_dir) / event_file_name()).string();
  file_ = std::fopen(path_.c_str(), "wbxe");  // x: never clobber another writer's file; e: O_CLOEXEC
  if (!file_) fail("cannot create");
  try {
    write_event(Proto().float64(kWallTime, wall_time_now()).bytes(kFileVersion, "brain.Event:2").str());
  } catch (...) {
    std::fclose(file_);  // the destructor does not run for a throwing constructor
    throw;
  }
}

EventWriter::~EventWriter() {
  if (!file_) return;
  std::fflush(file_);
  ::fsync(::fileno(file_));
  std::fclose(file_);
}

void EventWriter::fail(const char* step) const {
  error("EventWriter: ", path_, ": ", step, ": ", std::strerror(errno));
}

void EventWriter::write_event(const std::string& event) {
  const std::string record = tfrecord(event);
  if (std::fwrite(record.data(), 1, record.size(), file_) != record.size()) fail("write");
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  write_event(summary_event(step, Proto().bytes(kTag, tag).float32(kSimpleValue, float(value))));
}

// As TensorBoard's own text_pb writes it: a scalar string tensor whose
// metadata names the "text" plugin (its content, TextPluginData{version 0}, is empty).
void EventWriter::add_text(const std::string& tag, const std::string& text, int64_t step) {
  const Proto tensor = Proto().varint(1, kDtString).message(2, Proto()).bytes(8, text);  // dtype, shape [], string_val
  const Proto metadata = Proto().message(1, Proto().bytes(1, "text"));                   // plugin_data.plugin_name
  write_event(summary_event(step, Proto().bytes(kTag, tag).message(kTensor, tensor).message(kMetadata, metadata)));
}

void EventWriter::add_image_png(const std::string& tag, std::span<const uint8_t> png, int height, int width,
                                int64_t step) {
  FM_CHECK(starts_with(png, "\x89PNG\r\n\x1a\n"), "EventWriter: ", path_, ": image '", tag,
           "': the bytes are not a PNG file (encode the pixels first)");
  FM_CHECK(height > 0 && width > 0, "EventWriter: ", path_, ": image '", tag, "': size ", height, "x", width);
  const Proto image = Proto().varint(1, uint64_t(height)).varint(2, uint64_t(width)).bytes(4, png);
  write_event(summary_event(step, Proto().bytes(kTag, tag).message(kImage, image)));
}

void EventWriter::add_audio_wav(const std::string& tag, std::span<const uint8_t> wav, double sample_rate, int channels,
                                int64_t frames, int64_t step) {
  FM_CHECK(starts_with(wav, "RIFF") && starts_with(wav, "WAVE", 8), "EventWriter: ", path_, ": audio '", tag,
           "': the bytes are not a WAV file");
  FM_CHECK(sample_rate > 0 && channels > 0 && frames >= 0, "EventWriter: ", path_, ": audio '", tag, "': sample rate ",
           sample_rate, ", ", channels, " channels, ", frames, " frames");
  const Proto audio = Proto()
                          .float32(1, float(sample_rate))
                          .varint(2, uint64_t(channels))
                          .varint(3, uint64_t(frames))
                          .bytes(4, wav)
                          .bytes(5, "audio/wav");
  write_event(summary_event(step, Proto().bytes(kTag, tag).message(kAudio, audio)));
}

void EventWriter::flush() {
  if (std::fflush(file_) != 0) fail("flush");
  if (::fsync(::fileno(file_)) != 0) fail("fsync");
}

}  // namespace fm::io

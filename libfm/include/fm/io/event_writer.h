#pragma once
// fm::io::EventWriter: TensorBoard event files for a run directory, written
// by hand. The format is a small subset, so a protobuf/TensorFlow dependency
// would weigh far more than the ~200 lines it takes:
//  - a file is a sequence of TFRecords:
//      uint64 length, uint32 masked_crc32c(length), payload, uint32 masked_crc32c(payload)
//    (integers little-endian);
//  - each payload is a serialized tensorboard.Event protobuf; the first one
//    carries file_version "brain.Event:2", every later one a Summary with
//    one value: a scalar (simple_value), a text (a DT_STRING tensor tagged
//    for the "text" plugin), an image (Summary.Image) or audio (Summary.Audio).
// The file is `events.out.tfevents.<unix time>.<hostname>.<pid>.<n>` in the
// run directory, a new one per writer: a resumed run adds a file beside the
// old ones, and TensorBoard reads them all.
// Not thread-safe: one writer per thread, or a lock around it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

namespace fm::io {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses.
uint32_t crc32c(const void* data, size_t n);
// TFRecord stores CRCs masked, so that a CRC of data that itself holds CRCs stays robust.
uint32_t masked_crc32c(const void* data, size_t n);
// One TFRecord around `payload`.
std::string tfrecord(std::string_view payload);

class EventWriter {
 public:
  // Creates `run_dir` if needed and a new event file in it; throws fm::Error
  // naming the file when it cannot.
  explicit EventWriter(const std::string& run_dir);
  ~EventWriter();  // flushes; errors there are lost (call flush() to see them)
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Each add_* appends one event; TensorBoard stores scalars as float32.
  void add_scalar(const std::string& tag, double value, int64_t step);
  void add_text(const std::string& tag, const std::string& text, int64_t step);  // markdown
  // `png` is an already-encoded PNG file (libfm has no PNG encoder).
  void add_image_png(const std::string& tag, std::span<const uint8_t> png, int height, int width, int64_t step);
  // `wav` is a whole RIFF/WAVE file; `frames` is its length in samples per channel.
  void add_audio_wav(const std::string& tag, std::span<const uint8_t> wav, double sample_rate, int channels,
                     int64_t frames, int64_t step);

  // fflush and fsync: the events so far survive a crash of the machine.
  void flush();

  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  [[noreturn]] void fail(const char* step) const;

  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace fm::io

#pragma once
// fm::io::MetricsLog: a run's metrics.jsonl, one JSON object per line,
//   {"step": 100, "lr": 0.0003, "train_loss": 2.3125}
// "step" first, then the values sorted by name. JSON has no NaN or infinity:
// a non-finite value is written as null (a diverged loss shows as null).
//
// Opening appends to an existing file, and repairs what a killed run may have
// left: an incomplete last line (no trailing newline) is cut off. A resumed
// run also drops the lines it is about to write again (see the constructor).
// Each line goes to the kernel in one write(), so a killed process loses at
// most that line; flush() makes the lines survive a crash of the machine.
// Not thread-safe.
#include <cstdint>
#include <map>
#include <string>

namespace fm::io {

class MetricsLog {
 public:
  // Creates the file (and its directory) if needed.
  explicit MetricsLog(const std::string& path);
  // Resuming from a checkpoint at `resume_from_step`: also removes every line
  // with "step" >= resume_from_step, so the metrics are not logged twice.
  // The rewrite is atomic; a line that is not a JSON object with an integer
  // "step" throws fm::Error naming the file and line.
  MetricsLog(const std::string& path, int64_t resume_from_step);
  ~MetricsLog();  // fsyncs; errors there are lost (call flush() to see them)
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // `values` must not contain a key "step".
  void log(int64_t step, const std::map<std::string, double>& values);
  void flush();  // fsync

  const std::string& path() const { return path_; }

 private:
  void open_for_append();
  [[noreturn]] void fail(const char* step) const;

  std::string path_;
  int fd_ = -1;
};

}  // namespace fm::io

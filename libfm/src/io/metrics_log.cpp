#include "fm/io/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fm/error.h"
#include "fm/io/atomic_file.h"

namespace fm::io {
namespace {

void create_parent_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) error("MetricsLog: ", path, ": cannot create directory ", parent.string(), ": ", ec.message());
}

// The length of the file's content up to and including its last newline:
// what remains once a torn last line is cut off. Scans back from the end.
off_t complete_length(int fd, off_t size, const std::string& path) {
  char buf[4096];
  for (off_t end = size; end > 0;) {
    const off_t begin = end > off_t(sizeof(buf)) ? end - off_t(sizeof(buf)) : 0;
    const ssize_t n = ::pread(fd, buf, size_t(end - begin), begin);
    if (n < 0 && errno == EINTR) continue;
    if (n != end - begin) error("MetricsLog: ", path, ": read: ", n < 0 ? std::strerror(errno) : "short read");
    for (off_t i = n - 1; i >= 0; --i)
      if (buf[i] == '\n') return begin + i + 1;
    end = begin;
  }
  return 0;
}

// Rewrites the file without the lines whose step is >= `from_step`; a torn
// last line is left for open_for_append() to cut.
void drop_steps_from(const std::string& path, int64_t from_step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;  // nothing logged yet
  std::string kept, line;
  bool dropped = false;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (in.eof()) break;  // no newline after it: a torn line
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer())
      error("MetricsLog: ", path, ": line ", number, ": not a JSON object with an integer \"step\": ", line);
    if (record["step"].get<int64_t>() >= from_step) {
      dropped = true;
    } else {
      kept += line;
      kept += '\n';
    }
  }
  if (in.bad()) error("MetricsLog: ", path, ": read: ", std::strerror(errno));
  if (!dropped) return;
  AtomicFile out(path, "MetricsLog");
  out.write(kept.data(), kept.size());
  out.commit();
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  create_parent_directory(path_);
  open_for_append();
}

MetricsLog::MetricsLog(const std::string& path, int64_t resume_from_step) : path_(path) {
  create_parent_directory(path_);
  drop_steps_from(path_, resume_from_step);
  open_for_append();
}

MetricsLog::~MetricsLog() {
  if (fd_ < 0) return;
  ::fsync(fd_);
  ::close(fd_);
}

void MetricsLog::fail(const char* step) const { error("MetricsLog: ", path_, ": ", step, ": ", std::strerror(errno)); }

void MetricsLog::open_for_append() {
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) fail("cannot open");
  try {
    struct stat st;
    if (::fstat(fd, &st) != 0) fail("stat");
    const off_t keep = complete_length(fd, st.st_size, path_);
    if (keep < st.st_size && ::ftruncate(fd, keep) != 0) fail("truncate torn last line");
  } catch (...) {
    ::close(fd);  // the destructor does not run for a throwing constructor
    throw;
  }
  fd_ = fd;
}

void MetricsLog::log(int64_t step, const std::map<std::string, double>& values) {
  FM_CHECK(!values.count("step"), "MetricsLog: ", path_, ": \"step\" is not a valid value name");
  // Writes to a removed file succeed unseen: a run whose directory was
  // deleted would carry on with no log. Stop it instead.
  struct stat st;
  if (::fstat(fd_, &st) != 0) fail("stat");
  if (st.st_nlink == 0) error("MetricsLog: ", path_, ": the file was removed while the run was writing it");
  nlohmann::ordered_json record;
  record["step"] = step;
  for (const auto& [name, value] : values)
    record[name] = std::isfinite(value) ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail("write");
    done += size_t(n);
  }
}

void MetricsLog::flush() {
  if (::fsync(fd_) != 0) fail("fsync");
}

}  // namespace fm::io

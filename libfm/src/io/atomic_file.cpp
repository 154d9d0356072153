#include "fm/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "fm/error.h"

namespace fm::io {
namespace {

// pid alone is not unique: two threads of one process may save at once.
std::string unique_temp_path(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void fsync_directory_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) error("cannot open directory ", dir, ": ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0) error("fsync of directory ", dir, ": ", std::strerror(saved));
}

}  // namespace

AtomicFile::AtomicFile(std::string path, std::string op)
    : path_(std::move(path)), op_(std::move(op)), temp_path_(unique_temp_path(path_)) {
  // O_TRUNC: a temp file left by a killed writer that had the same pid is reused.
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail("cannot create temp file");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFile::fail(const char* step) const {
  error(op_, ": ", path_, ": ", step, " (", temp_path_, "): ", std::strerror(errno));
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail("fsync");
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close");
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("rename");
  committed_ = true;
  try {
    fsync_directory_of(path_);
  } catch (const Error& e) {
    error(op_, ": ", path_, ": ", e.what());
  }
}

}  // namespace fm::io

#pragma once
// fm::io::AtomicFile: writes a file so that readers, and a crash at any
// instant, see either the old content at `path` or the complete new content,
// never a mix. Bytes go to a temp file in the same directory
// (`path.tmp.<pid>.<n>`, unique per writer); commit() fsyncs it, renames it
// over `path` and fsyncs the directory so the rename itself is durable.
#include <cstddef>
#include <string>

namespace fm::io {

class AtomicFile {
 public:
  // `op` prefixes error messages: "<op>: <path>: write: No space left on device".
  AtomicFile(std::string path, std::string op);
  ~AtomicFile();  // removes the temp file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void commit();

  const std::string& temp_path() const { return temp_path_; }

 private:
  [[noreturn]] void fail(const char* step) const;

  std::string path_, op_, temp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace fm::io

#pragma once
// fm::io::MappedFile: a regular file mapped into memory, private to this
// process, unmapped when the MappedFile goes. An empty file maps to no bytes.
#include <cstddef>
#include <string>

namespace fm::io {

class MappedFile {
 public:
  // `context` starts error messages, just before the path:
  // "load_safetensors: " gives "load_safetensors: <path>: cannot open: No such file or directory".
  // `writable`: the pages may be written, copy on write; the file never changes.
  MappedFile(const std::string& path, const std::string& context, bool writable = false);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace fm::io

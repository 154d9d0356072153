#pragma once
// A file in memory for libsndfile's virtual I/O and FFmpeg's AVIOContext:
// decode() reads bytes that are already in memory (a file, a tar member), and
// write() encodes into memory, then writes the whole file atomically.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace fm::audio::detail {

class MemoryFile {
 public:
  MemoryFile(const void* bytes, size_t size) : view_(static_cast<const char*>(bytes)), size_(int64_t(size)) {}
  MemoryFile() : writable_(true) {}  // starts empty, grows as it is written

  int64_t size() const { return writable_ ? int64_t(out_.size()) : size_; }
  int64_t tell() const { return pos_; }
  const std::string& bytes() const { return out_; }

  int64_t read(void* dst, int64_t n) {
    const char* data = writable_ ? out_.data() : view_;
    n = std::max<int64_t>(0, std::min(n, size() - pos_));
    if (n > 0) std::memcpy(dst, data + pos_, size_t(n));
    pos_ += n;
    return n;
  }
  int64_t write(const void* src, int64_t n) {
    if (!writable_ || n < 0) return -1;
    if (pos_ + n > int64_t(out_.size())) out_.resize(size_t(pos_ + n));
    std::memcpy(out_.data() + pos_, src, size_t(n));
    pos_ += n;
    return n;
  }
  // whence is SEEK_SET, SEEK_CUR or SEEK_END; -1 (position unchanged) when
  // the result would be negative.
  int64_t seek(int64_t offset, int whence) {
    const int64_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? pos_ : whence == SEEK_END ? size() : -1;
    if (base < 0 || base + offset < 0) return -1;
    pos_ = base + offset;
    return pos_;
  }

 private:
  const char* view_ = nullptr;
  int64_t size_ = 0, pos_ = 0;
  bool writable_ = false;
  std::string out_;
};

}  // namespace fm::audio::detail

#pragma once
// What the FFmpeg decoder and encoder share: error text, an AVIOContext over
// a MemoryFile, and owners that free FFmpeg's objects on every path.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libswresample/swresample.h>
}

#include <string>

#include "memory_file.h"

namespace fm::audio::detail {

inline std::string av_error_text(int code) {
  char text[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, text, sizeof(text));
  return text;
}

// An AVIOContext reading or writing `file` (seekable, so that muxers can go
// back and fill in their headers, as the MP3 muxer's Xing frame count).
class MemoryIO {
 public:
  MemoryIO(MemoryFile* file, bool writable) {
    const int buffer_size = 1 << 16;
    auto* buffer = static_cast<unsigned char*>(av_malloc(buffer_size));
    if (buffer) ctx_ = avio_alloc_context(buffer, buffer_size, writable ? 1 : 0, file, read, write, seek);
    if (!ctx_) av_free(buffer);
    else ctx_->seekable = AVIO_SEEKABLE_NORMAL;
  }
  ~MemoryIO() {
    if (ctx_) {
      av_freep(&ctx_->buffer);  // FFmpeg may have swapped the buffer: free the current one
      avio_context_free(&ctx_);
    }
  }
  MemoryIO(const MemoryIO&) = delete;
  MemoryIO& operator=(const MemoryIO&) = delete;
  AVIOContext* get() const { return ctx_; }

 private:
  static int read(void* f, uint8_t* buf, int n) {
    const int64_t got = static_cast<MemoryFile*>(f)->read(buf, n);
    return got > 0 ? int(got) : AVERROR_EOF;
  }
#if LIBAVFORMAT_VERSION_MAJOR >= 61
  static int write(void* f, const uint8_t* buf, int n) {
#else
  static int write(void* f, uint8_t* buf, int n) {
#endif
    return int(static_cast<MemoryFile*>(f)->write(buf, n));
  }
  static int64_t seek(void* f, int64_t offset, int whence) {
    auto* file = static_cast<MemoryFile*>(f);
    if (whence == AVSEEK_SIZE) return file->size();
    return file->seek(offset, whence & ~AVSEEK_FORCE);
  }
  AVIOContext* ctx_ = nullptr;
};

struct FreePacket {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FreeFrame {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct FreeCodec {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FreeSwr {
  void operator()(SwrContext* s) const { swr_free(&s); }
};

}  // namespace fm::audio::detail

#include "text_stream.h"

#include <algorithm>

namespace fm::app::serve {
namespace {

// Where an incomplete UTF-8 sequence at the end of s starts (s.size() if none).
size_t incomplete_utf8_tail(const std::string& s, size_t from) {
  for (size_t back = 1; back <= 3 && back <= s.size() - from; ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xc0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    return need > back ? s.size() - back : s.size();
  }
  return s.size();
}

}  // namespace

std::string TextStream::push(int32_t token) {
  if (stopped_) return "";
  text_ += tokenizer_.decode(std::span<const int32_t>(&token, 1));
  // A stop string can only start in text not yet let out (what could begin one is held back).
  size_t stop_at = std::string::npos;
  for (const auto& s : stop_) stop_at = std::min(stop_at, text_.find(s, sent_));
  if (stop_at != std::string::npos) {
    text_.resize(stop_at);
    stopped_ = true;
    return finish();
  }
  size_t end = text_.size();
  for (const auto& s : stop_)
    for (size_t k = std::min(s.size() - 1, text_.size() - sent_); k > 0; --k)
      if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
        end = std::min(end, text_.size() - k);
        break;
      }
  end = std::min(end, incomplete_utf8_tail(text_, sent_));
  std::string out = text_.substr(sent_, end - sent_);
  sent_ = end;
  return out;
}

std::string TextStream::finish() {
  std::string out = text_.substr(sent_);
  sent_ = text_.size();
  return out;
}

}  // namespace fm::app::serve

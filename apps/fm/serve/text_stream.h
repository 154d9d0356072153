#pragma once
// Generated tokens to text, a piece at a time (streamed completions): text
// is let out only once it is final. An incomplete UTF-8 character at the end
// waits for its next bytes, and a tail that could begin a stop string waits
// until it cannot; at a stop string the text ends (the stop string left out).
#include <cstdint>
#include <string>
#include <vector>

#include "fm/text/bpe.h"

namespace fm::app::serve {

class TextStream {
 public:
  TextStream(const text::BpeTokenizer& tokenizer, std::vector<std::string> stop)
      : tokenizer_(tokenizer), stop_(std::move(stop)) {}
  // Adds a token's bytes; returns the text that became final (maybe empty).
  std::string push(int32_t token);
  // Generation has ended: the text held back so far.
  std::string finish();
  bool stopped() const { return stopped_; }  // a stop string was met: nothing more comes
  const std::string& text() const { return text_; }  // all of it, up to the stop string once stopped

 private:
  const text::BpeTokenizer& tokenizer_;
  std::vector<std::string> stop_;
  std::string text_;
  size_t sent_ = 0;
  bool stopped_ = false;
};

}  // namespace fm::app::serve

#pragma once
// Pretokenizer: splits text into GPT-2's pre-tokens with PCRE2 (JIT).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>

#include "fm/error.h"

namespace fm::text {

class Pretokenizer {
 public:
  Pretokenizer();
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Calls on_piece(std::string_view) for each pre-token of `text`, in order;
  // the pieces cover `text` exactly. Thread-safe.
  template <class OnPiece>
  void split(std::string_view text, OnPiece&& on_piece) const;

 private:
  // Bytes that are not valid UTF-8 are matched as a stand-in character of the
  // same class as U+FFFD (what tiktoken sees for them), so the pieces keep the
  // original bytes but have tiktoken's boundaries. `scratch` holds the copy.
  static std::string_view valid_utf8_view(std::string_view text, std::string& scratch);
  int match(std::string_view subject, size_t pos, pcre2_match_data* data) const;

  pcre2_code* code_ = nullptr;
  bool jit_ = false;  // PCRE2 built without JIT support falls back to the interpreter
};

template <class OnPiece>
void Pretokenizer::split(std::string_view text, OnPiece&& on_piece) const {
  std::string scratch;
  const std::string_view subject = valid_utf8_view(text, scratch);
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(pcre2_match_data_create(1, nullptr),
                                                                      pcre2_match_data_free);
  if (!data) error("Pretokenizer: out of memory");
  size_t pos = 0;
  while (pos < subject.size()) {
    const int rc = match(subject, pos, data.get());
    // Every character falls in one of the pattern's classes, so the (anchored)
    // match succeeds at every position of valid UTF-8.
    if (rc < 0) error("Pretokenizer: PCRE2 match failed at byte ", pos, " (error ", rc, ")");
    const size_t end = pcre2_get_ovector_pointer(data.get())[1];
    on_piece(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace fm::text

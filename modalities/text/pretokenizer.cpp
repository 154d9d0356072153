#include "pretokenizer.h"

#include <cstdint>
#include <cstring>

namespace fm::text {
namespace {

// GPT-2's pattern, \s spelt out as Unicode's White_Space, as tiktoken's Rust
// regex reads it: PCRE2's \s also takes U+180E, White_Space before Unicode 6.3.
constexpr const char* kWhiteSpace = R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string gpt2_pattern() {
  const std::string ws = kWhiteSpace;
  return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" + ws + "\\p{L}\\p{N}]+|[" + ws + "]+(?![^" + ws +
         "])|[" + ws + "]+";
}

// Matched in place of each byte that is not part of valid UTF-8: like U+FFFD
// it is in [^\s\p{L}\p{N}] and starts no contraction.
constexpr char kStandIn = '?';

// Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), 0 if none.
size_t utf8_sequence_length(const unsigned char* p, size_t avail) {
  const unsigned char b = p[0];
  if (b < 0x80) return 1;
  auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < avail && p[i] >= lo && p[i] <= hi;
  };
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    const unsigned char lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    const unsigned char lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

// Offset of the first byte from `from` on that is not part of valid UTF-8, or
// n. Written out because every such byte is needed, and PCRE2's own check
// reports only the first.
size_t first_invalid(const unsigned char* p, size_t n, size_t from) {
  size_t i = from;
  while (i < n) {
    if (i + 8 <= n) {  // ASCII fast path, 8 bytes at a time
      uint64_t word;
      std::memcpy(&word, p + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const size_t len = utf8_sequence_length(p + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return n;
}

}  // namespace

Pretokenizer::Pretokenizer() {
  const std::string pattern = gpt2_pattern();
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(err, message, sizeof(message));
    error("Pretokenizer: PCRE2 cannot compile the pattern at offset ", offset, ": ",
          reinterpret_cast<const char*>(message));
  }
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Pretokenizer::~Pretokenizer() { pcre2_code_free(code_); }

int Pretokenizer::match(std::string_view subject, size_t pos, pcre2_match_data* data) const {
  const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data());
  // The subject is valid UTF-8 (valid_utf8_view): PCRE2 need not check it again,
  // which it would otherwise do over the whole subject on every call.
  if (jit_) return pcre2_jit_match(code_, s, subject.size(), pos, 0, data, nullptr);
  return pcre2_match(code_, s, subject.size(), pos, PCRE2_NO_UTF_CHECK, data, nullptr);
}

std::string_view Pretokenizer::valid_utf8_view(std::string_view text, std::string& scratch) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  size_t bad = first_invalid(p, text.size(), 0);
  if (bad == text.size()) return text;
  scratch.assign(text);
  while (bad < text.size()) {
    scratch[bad] = kStandIn;
    bad = first_invalid(p, text.size(), bad + 1);
  }
  return scratch;
}

}  // namespace fm::text

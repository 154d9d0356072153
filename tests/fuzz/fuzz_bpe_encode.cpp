// BpeTokenizer::encode on arbitrary bytes (invalid UTF-8 included), with and
// without special tokens: decode(encode(x)) must give x back (bpe.h).
#include <cstdint>
#include <string>
#include <string_view>

#include "fm/error.h"
#include "fm/text/bpe.h"

namespace {

const fm::text::BpeTokenizer& tokenizer() {
  static const fm::text::BpeTokenizer tok = [] {
    fm::text::BpeTrainOptions o;
    o.vocab_size = 400;
    o.special_tokens = {"<|endoftext|>", "<|pad|>"};
    std::string corpus;
    for (int i = 0; i < 20; ++i)
      corpus += "The quick brown fox jumps over the lazy dog. It's 2024; don't stop! Ünïcödé 漢字 🙂\n";
    return fm::text::BpeTokenizer::train(corpus, o);
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tok = tokenizer();
  for (bool allow_special : {false, true}) {
    const auto ids = tok.encode(text, allow_special);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
    if (tok.decode(ids) != text) __builtin_trap();
  }
  return 0;
}

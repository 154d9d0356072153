#pragma once
// What the tokenizer-file targets ask of a tokenizer they loaded: encoding a
// fixed text (a table without every single byte may refuse it: an fm::Error)
// and decoding the ids back, without a crash.
#include <cstddef>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"

namespace fm::fuzz {

inline void encode_and_decode(const text::BpeTokenizer& tok) {
  try {
    const auto ids = tok.encode("Hello world, it's 2024! <|endoftext|>", true);
    volatile size_t sink = tok.decode(ids).size() + size_t(tok.vocab_size());
    (void)sink;
  } catch (const Error& e) {
    note(e);
  }
}

}  // namespace fm::fuzz

// BpeTokenizer::from_tiktoken (tiktoken's "<base64 token> <rank>" lines) on
// arbitrary text; a tokenizer it accepts must encode and decode.
#include <cstdint>
#include <string>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("ranks.tiktoken", {reinterpret_cast<const char*>(data), size});
  try {
    const fm::text::BpeTokenizer tok = fm::text::BpeTokenizer::from_tiktoken(path, {{"<|endoftext|>", 50256}});
    try {
      const auto ids = tok.encode("Hello world, it's 2024! <|endoftext|>", true);
      volatile size_t sink = tok.decode(ids).size() + size_t(tok.vocab_size());
      (void)sink;
    } catch (const fm::Error& e) {
      fm::fuzz::note(e);
    }
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

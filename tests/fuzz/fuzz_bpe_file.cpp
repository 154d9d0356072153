// BpeTokenizer::load (libfm's "libfm-bpe 1" file) on arbitrary text. A
// tokenizer it accepts must encode and decode without failing.
#include <cstdint>
#include <string>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("tokenizer.bpe", {reinterpret_cast<const char*>(data), size});
  try {
    const fm::text::BpeTokenizer tok = fm::text::BpeTokenizer::load(path);
    try {
      const auto ids = tok.encode("Hello world, it's 2024! <|endoftext|>", true);
      volatile size_t sink = tok.decode(ids).size() + size_t(tok.vocab_size());
      (void)sink;
    } catch (const fm::Error&) {  // a table without every single byte cannot encode everything
    }
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

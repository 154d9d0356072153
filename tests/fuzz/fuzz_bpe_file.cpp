// BpeTokenizer::load (libfm's "libfm-bpe 1" file) on arbitrary text. A
// tokenizer it accepts must encode and decode without failing.
#include <cstdint>
#include <string>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"
#include "tokenizer_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("tokenizer.bpe", {reinterpret_cast<const char*>(data), size});
  try {
    const fm::text::BpeTokenizer tok = fm::text::BpeTokenizer::load(path);
    fm::fuzz::encode_and_decode(tok);
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

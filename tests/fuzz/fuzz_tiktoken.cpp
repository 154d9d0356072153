// BpeTokenizer::from_tiktoken (tiktoken's "<base64 token> <rank>" lines) on
// arbitrary text; a tokenizer it accepts must encode and decode.
#include <cstdint>
#include <string>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"
#include "tokenizer_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fm::fuzz::write_file("ranks.tiktoken", {reinterpret_cast<const char*>(data), size});
  try {
    const fm::text::BpeTokenizer tok = fm::text::BpeTokenizer::from_tiktoken(path, {{"<|endoftext|>", 50256}});
    fm::fuzz::encode_and_decode(tok);
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

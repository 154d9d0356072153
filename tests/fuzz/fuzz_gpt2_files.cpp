// BpeTokenizer::from_gpt2_files (GPT-2's encoder.json and vocab.bpe) on
// arbitrary text: the input is encoder.json, a NUL byte, then vocab.bpe.
#include <cstdint>
#include <string>

#include "fm/error.h"
#include "fm/text/bpe.h"
#include "fuzz_util.h"
#include "tokenizer_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto [encoder, vocab] = fm::fuzz::split_at_nul(data, size);
  const std::string encoder_path = fm::fuzz::write_file("encoder.json", encoder);
  const std::string vocab_path = fm::fuzz::write_file("vocab.bpe", vocab);
  try {
    const fm::text::BpeTokenizer tok = fm::text::BpeTokenizer::from_gpt2_files(encoder_path, vocab_path);
    fm::fuzz::encode_and_decode(tok);
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

// The corrupt-input corpus for tokenizer files: libfm's BPE format
// (BpeTokenizer::load), tiktoken rank files, and GPT-2's encoder.json and
// vocab.bpe (each read with the good file of the other kind). See
// tests/corrupt_cases.h and tests/fixtures/make_corrupt.py.
#include "corrupt_cases.h"
#include "fm/text/bpe.h"

namespace fm::test {
namespace {

// A loaded tokenizer must also work: a round trip through it.
ReadOutcome use(const text::BpeTokenizer& tok) {
  const std::string text = "the hat, \xff and the rest";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  return {};
}

const std::string kGoodEncoder = (corrupt_dir() / "tokenizer" / "gpt2_good_encoder.json").string();
const std::string kGoodVocab = (corrupt_dir() / "tokenizer" / "gpt2_good_vocab.bpe").string();

const std::map<std::string, CorruptReader> kReaders = {
    {"bpe_load", [](const std::string& p) { return use(text::BpeTokenizer::load(p)); }},
    {"tiktoken", [](const std::string& p) { return use(text::BpeTokenizer::from_tiktoken(p)); }},
    {"gpt2_encoder", [](const std::string& p) { return use(text::BpeTokenizer::from_gpt2_files(p, kGoodVocab)); }},
    {"gpt2_vocab", [](const std::string& p) { return use(text::BpeTokenizer::from_gpt2_files(kGoodEncoder, p)); }},
};

class CorruptTokenizer : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptTokenizer, ErrorNeverCrash) { run_corrupt_case(GetParam(), kReaders.at(GetParam().reader)); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptTokenizer,
                         ::testing::ValuesIn(corrupt_cases({"bpe_load", "tiktoken", "gpt2_encoder", "gpt2_vocab"})),
                         case_name);

}  // namespace
}  // namespace fm::test

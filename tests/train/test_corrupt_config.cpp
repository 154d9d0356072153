// The corrupt-input corpus for recipes: INI files read by Config::parse_file
// and command-line overrides (one argument per line of an .args file) read
// by Config::parse_overrides, both against the trainer's keys. See
// tests/corrupt_cases.h and tests/fixtures/make_corrupt.py.
#include <fstream>

#include "corrupt_cases.h"
#include "fm/train/recipe.h"

namespace fm::test {
namespace {

ReadOutcome read_ini(const std::string& path) {
  train::Config c;
  train::declare_trainer_keys(c);
  c.parse_file(path);
  (void)c.to_ini();
  return {};
}

ReadOutcome read_overrides(const std::string& path) {
  std::vector<std::string> args;
  std::ifstream in(path, std::ios::binary);
  for (std::string line; std::getline(in, line);) args.push_back(line);
  train::Config c;
  train::declare_trainer_keys(c);
  c.parse_overrides(args);
  return {};
}

const std::map<std::string, CorruptReader> kReaders = {{"ini", read_ini}, {"overrides", read_overrides}};

class CorruptConfig : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(CorruptConfig, ErrorNeverCrash) { run_corrupt_case(GetParam(), kReaders.at(GetParam().reader)); }

INSTANTIATE_TEST_SUITE_P(Corpus, CorruptConfig, ::testing::ValuesIn(corrupt_cases({"ini", "overrides"})), case_name);

}  // namespace
}  // namespace fm::test

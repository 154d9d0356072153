#pragma once
// The evaluation harness (`fm eval RUN --suite SUITE.ini`): a suite is a
// list of named evaluations, each the run's own evaluate() with some keys
// changed (another validation set, another class list, more samples), and
// the figures to keep. Results go into RUN/eval/<suite>.json and .md, and
// `fm eval --compare RUN_A RUN_B` sets two runs' results side by side.
//
//   [suite]                 name = text   (default: the file's stem)
//   [fortunes]              one evaluation, named by its section
//   data.val = data/fortunes/bpe4k_val_*.bin
//   report = val_loss, val_ppl          the figures kept (default: all)
//   kinds = lm                          the run kinds it applies to (default: all)
//
// Language-model losses also get their perplexity (val_ppl = exp(val_loss)).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fm::train {

struct SuiteEval {
  std::string name;
  std::vector<std::string> overrides;  // "--key=value", applied to the run's config
  std::vector<std::string> report;     // figures kept; empty: all
  std::vector<std::string> kinds;      // run kinds it applies to; empty: all
};

struct Suite {
  std::string name;
  std::vector<SuiteEval> evals;
};

// Errors name the file and line.
Suite load_suite(const std::string& path);

struct SuiteResults {
  std::string run, suite, kind;
  int64_t step = 0;
  std::vector<std::pair<std::string, std::map<std::string, double>>> results;  // in the suite's order
  std::vector<std::string> skipped;  // evaluations that do not apply to this kind, with why
};

SuiteResults run_suite(const std::string& run_dir, const Suite& suite);
// Writes run_dir/eval/<suite>.json and .md; returns the JSON's path.
std::string write_suite_results(const std::string& run_dir, const SuiteResults& r);
std::string suite_markdown(const SuiteResults& r);
// Reads a results JSON back (errors name the file).
SuiteResults read_suite_results(const std::string& path);
// Two runs' results of one suite as a Markdown table: evaluation, figure, A, B, B - A.
std::string compare_markdown(const SuiteResults& a, const SuiteResults& b);

}  // namespace fm::train

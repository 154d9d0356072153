// The evaluation harness (fm/train/eval_suite.h) on the toy_shift kind: a
// suite's evaluations are the run's own evaluation with keys changed, kept
// figures filtered, kinds skipped with a note, results written as JSON and
// Markdown and read back, two runs compared; malformed suites fail naming
// the file and line.
#include <gtest/gtest.h>

#include <filesystem>

#include "fm/train/eval_suite.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"
#include "helpers.h"
#include "toy_shift.h"

namespace {

using namespace fm;
namespace fs = std::filesystem;

class EvalSuiteTest : public test::TempDirTest {
 protected:
  EvalSuiteTest() : TempDirTest("fm_eval_suite_") {}
  void SetUp() override {
    TempDirTest::SetUp();
    test::write_file(path("recipe.ini"), toy::kRecipe);
    test::write_file(path("suite.ini"),
                     "# two frequencies\n[suite]\nname = freqs\n\n[same]\ndata.freq = 1.0\n\n"
                     "[shifted]   ; the fine-tuned task\ndata.freq = 2.0\nreport = val_loss\n\n"
                     "[text_only]\nkinds = lm\ndata.val = nowhere\n");
  }
  void train(const std::string& run, std::vector<std::string> o) {
    o.push_back("--run.dir=" + path(run));
    fm::train::Trainer(fm::train::load_recipe(path("recipe.ini"), o), false).run();
  }
};

TEST_F(EvalSuiteTest, RunsWritesReadsAndCompares) {
  train("base", {"--data.freq=1.0", "--train.max_steps=200"});
  train("tuned", {"--data.freq=2.0", "--train.max_steps=100", "--finetune.from=" + path("base")});
  const train::Suite suite = train::load_suite(path("suite.ini"));
  ASSERT_EQ(suite.name, "freqs");
  ASSERT_EQ(suite.evals.size(), 3u);
  EXPECT_EQ(suite.evals[1].overrides, std::vector<std::string>{"--data.freq=2.0"});

  const train::SuiteResults a = train::run_suite(path("base"), suite);
  EXPECT_EQ(a.kind, "toy_shift");
  EXPECT_EQ(a.step, 200);
  ASSERT_EQ(a.results.size(), 2u);
  ASSERT_EQ(a.skipped.size(), 1u);
  EXPECT_NE(a.skipped[0].find("text_only (for lm, not toy_shift)"), std::string::npos);
  // "same" is the run's own evaluation; "shifted" another task, reported alone.
  EXPECT_DOUBLE_EQ(a.results[0].second.at("val_loss"), train::evaluate_run(path("base"), {"--data.freq=1.0"}).at("val_loss"));
  EXPECT_EQ(a.results[1].second.size(), 1u);
  EXPECT_GT(a.results[1].second.at("val_loss"), 5 * a.results[0].second.at("val_loss"));

  const std::string file = train::write_suite_results(path("base"), a);
  EXPECT_EQ(file, path("base") + "/eval/freqs.json");
  EXPECT_TRUE(fs::exists(path("base") + "/eval/freqs.md"));
  const train::SuiteResults back = train::read_suite_results(file);
  EXPECT_EQ(back.results, a.results);
  EXPECT_EQ(back.skipped, a.skipped);

  const train::SuiteResults b = train::run_suite(path("tuned"), suite);
  const std::string table = train::compare_markdown(a, b);
  EXPECT_NE(table.find("| evaluation | figure | A | B | B - A |"), std::string::npos) << table;
  const double gain = b.results[1].second.at("val_loss") - a.results[1].second.at("val_loss");
  EXPECT_LT(gain, 0) << "the fine-tuned run is not better on its task";
  EXPECT_NE(table.find("| shifted | val_loss | "), std::string::npos) << table;
}

TEST_F(EvalSuiteTest, BadSuitesAndFiguresFailClearly) {
  auto suite_error = [&](const std::string& text) {
    test::write_file(path("bad.ini"), text);
    return test::error_of([&] { train::load_suite(path("bad.ini")); });
  };
  EXPECT_NE(suite_error("[a]\ndata.freq 2\n").find("bad.ini:2: expected 'key = value'"), std::string::npos);
  EXPECT_NE(suite_error("data.freq = 2\n").find("bad.ini:1: 'data.freq' comes before any [section]"), std::string::npos);
  EXPECT_NE(suite_error("[a]\n[a]\n").find("bad.ini:2: evaluation 'a' appears twice"), std::string::npos);
  EXPECT_NE(suite_error("[a]\nfreq = 2\n").find("neither report, kinds nor a config key"), std::string::npos);
  EXPECT_NE(suite_error("# nothing\n").find("names no evaluation"), std::string::npos);
  train("base", {"--train.max_steps=20"});
  test::write_file(path("figure.ini"), "[a]\nreport = accuracy\n");
  test::expect_error([&] { train::run_suite(path("base"), train::load_suite(path("figure.ini"))); },
                     "evaluation 'a' reports no figure 'accuracy' (it has: val_loss)");
  test::write_file(path("key.ini"), "[a]\ndata.frequency = 2\n");
  test::expect_error([&] { train::run_suite(path("base"), train::load_suite(path("key.ini"))); },
                     "evaluation 'a': ");
  test::write_file(path("garbage.json"), "{\"run\": 1}");
  test::expect_error([&] { train::read_suite_results(path("garbage.json")); }, "garbage.json: not a suite results file");
}

}  // namespace

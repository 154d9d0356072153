// fm::tasks caption metrics against pycocoevalcap 1.2: every corpus in
// tests/fixtures/caption_metrics.json (written by
// make_caption_metric_fixtures.py: random, short, copied, disjoint, tied
// reference lengths, one example, 200 examples) must score as its Bleu(4),
// Rouge and Cider did, within 1e-6 absolute and 1e-9 relative (so the tiny
// scores its 1e-15 / 1e-9 constants make are checked too). Also cases
// checkable by hand, and normalize_caption.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fm/tasks/caption_metrics.h"

using fm::tasks::CaptionExample;

namespace {

nlohmann::json load_fixture() {
  const auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / "caption_metrics.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  return nlohmann::json::parse(in);
}

void expect_score(double actual, double expected, const std::string& what) {
  const double err = std::abs(actual - expected);
  EXPECT_LE(err, 1e-6) << what << ": " << actual << " vs pycocoevalcap's " << expected;
  EXPECT_LE(err, 1e-9 * std::abs(expected)) << what << ": " << actual << " vs pycocoevalcap's " << expected;
}

}  // namespace

TEST(CaptionMetrics, MatchPycocoevalcap) {
  const nlohmann::json fixture = load_fixture();
  ASSERT_GE(fixture["sets"].size(), 10u);
  for (const auto& set : fixture["sets"]) {
    const std::string name = set["name"];
    std::vector<CaptionExample> examples;
    for (const auto& e : set["examples"])
      examples.push_back({e["candidate"].get<std::string>(), e["references"].get<std::vector<std::string>>()});
    const fm::tasks::CaptionScores s = fm::tasks::caption_scores(examples);
    for (int n = 0; n < 4; ++n) expect_score(s.bleu[n], set["bleu"][n], name + " BLEU-" + std::to_string(n + 1));
    expect_score(s.rouge_l, set["rouge_l"], name + " ROUGE-L");
    expect_score(s.cider_d, set["cider_d"], name + " CIDEr-D");
  }
}

TEST(CaptionMetrics, CandidateEqualToItsOnlyReference) {
  const std::vector<CaptionExample> corpus = {{"a man rides a horse", {"a man rides a horse"}},
                                              {"two dogs play in the snow", {"two dogs play in the snow"}}};
  const std::array<double, 4> b = fm::tasks::bleu(corpus);
  for (double v : b) EXPECT_NEAR(v, 1.0, 1e-6);
  EXPECT_DOUBLE_EQ(fm::tasks::rouge_l(corpus), 1.0);
  // Every n-gram is in one image of two: idf log 2 for all, cosine 1, no length penalty.
  EXPECT_NEAR(fm::tasks::cider_d(corpus), 10.0, 1e-12);
  // One image: idf log(1) - log(1) = 0 for every n-gram, so CIDEr-D is 0.
  EXPECT_EQ(fm::tasks::cider_d({corpus[0]}), 0.0);
}

TEST(CaptionMetrics, HandComputed) {
  // Brevity penalty exp(1 - 4/2) on a candidate of half the reference's length.
  EXPECT_NEAR(fm::tasks::bleu({{"a b", {"a b c d"}}})[0], std::exp(-1.0), 1e-6);
  // "closest": lengths 4 and 6 around 5 tie; the shorter is taken, so no penalty.
  EXPECT_NEAR(fm::tasks::bleu({{"a b c d e", {"a b c d e f", "x y z w"}}})[0], 1.0, 1e-6);
  // LCS("a b c", "a x c d") = 2: precision 2/3, recall 1/2, F with beta^2 = 1.44.
  const double p = 2.0 / 3, r = 0.5;
  EXPECT_NEAR(fm::tasks::rouge_l({{"a b c", {"a x c d"}}}), 2.44 * p * r / (r + 1.44 * p), 1e-12);
  // Precision and recall are maximised over references separately.
  // Precision 1 from the second reference, recall 1 from the first: F = 1.
  EXPECT_NEAR(fm::tasks::rouge_l({{"a b c", {"a b", "a x b y c z w"}}}), 1.0, 1e-12);
}

TEST(CaptionMetrics, RejectsEmptyInput) {
  EXPECT_THROW(fm::tasks::caption_scores({}), std::invalid_argument);
  EXPECT_THROW(fm::tasks::caption_scores({{"a dog", {}}}), std::invalid_argument);
}

TEST(CaptionMetrics, NormalizeCaption) {
  using fm::tasks::normalize_caption;
  EXPECT_EQ(normalize_caption("A Man, riding a horse."), "a man riding a horse");
  EXPECT_EQ(normalize_caption("  The dog's ball -- (red)!\n"), "the dog 's ball red");
  EXPECT_EQ(normalize_caption("Don't   STOP... \"now\"; ok?"), "do n't stop now ok");
  EXPECT_EQ(normalize_caption("a t-shirt costs 3.5 - really"), "a t-shirt costs 3.5 really");
  EXPECT_EQ(normalize_caption("... ! ,"), "");
  EXPECT_EQ(normalize_caption(""), "");
}

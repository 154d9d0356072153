// pick_token against an independent reference: greedy is the argmax; with a
// temperature, top-k and top-p, the frequencies of many draws match the
// distribution worked out here (softmax of logits / T over the k best, cut
// to the smallest prefix holding top_p of that mass, renormalised), and
// tokens outside it never appear.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "fm/tasks/sampling.h"
#include "helpers.h"

using namespace fm;

namespace {

std::vector<double> reference(const std::vector<float>& logits, const tasks::SamplingOptions& o) {
  const size_t v = logits.size();
  std::vector<size_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  const size_t k = o.top_k > 0 ? std::min<size_t>(size_t(o.top_k), v) : v;
  std::vector<double> p(v, 0.0);
  double z = 0;
  for (size_t i = 0; i < k; ++i) z += std::exp(double(logits[order[i]]) / o.temperature);
  double cum = 0;
  for (size_t i = 0; i < k; ++i) {
    const double q = std::exp(double(logits[order[i]]) / o.temperature) / z;
    p[order[i]] = q;
    cum += q;
    if (cum >= o.top_p) break;
  }
  const double kept = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= kept;
  return p;
}

void expect_frequencies(const std::vector<float>& logits, const tasks::SamplingOptions& o, uint64_t seed) {
  const std::vector<double> p = reference(logits, o);
  Generator gen(seed);
  const int n = 20000;
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++count[size_t(tasks::pick_token(logits, o, gen))];
  for (size_t t = 0; t < p.size(); ++t) {
    if (p[t] == 0) {
      EXPECT_EQ(count[t], 0) << "token " << t << " is outside the kept set";
      continue;
    }
    const double f = double(count[t]) / n, sd = std::sqrt(p[t] * (1 - p[t]) / n);
    EXPECT_NEAR(f, p[t], 5 * sd + 1e-4) << "token " << t << " T " << o.temperature << " k " << o.top_k << " p "
                                        << o.top_p;
  }
}

}  // namespace

TEST(Sampling, GreedyIsTheArgmaxAndTopOneToo) {
  manual_seed(3);
  for (int trial = 0; trial < 20; ++trial) {
    const std::vector<float> logits = randn({50}).to_vector<float>();
    const int32_t best = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    Generator gen{uint64_t(trial)};
    tasks::SamplingOptions greedy;
    greedy.temperature = 0;
    EXPECT_EQ(tasks::pick_token(logits, greedy, gen), best);
    tasks::SamplingOptions top1;
    top1.top_k = 1;
    top1.temperature = 5.0;
    EXPECT_EQ(tasks::pick_token(logits, top1, gen), best);
  }
}

TEST(Sampling, FrequenciesFollowTemperatureTopKAndTopP) {
  manual_seed(11);
  const std::vector<float> logits = (randn({12}) * 1.5).to_vector<float>();
  struct Case {
    double temperature;
    int64_t top_k;
    double top_p;
  };
  const Case cases[] = {{1.0, 0, 1.0}, {0.5, 0, 1.0}, {2.0, 0, 1.0}, {1.0, 4, 1.0},
                        {1.0, 0, 0.7}, {0.8, 6, 0.9}, {1.5, 3, 0.5}};
  uint64_t seed = 100;
  for (const Case& c : cases) {
    tasks::SamplingOptions o;
    o.temperature = c.temperature;
    o.top_k = c.top_k;
    o.top_p = c.top_p;
    expect_frequencies(logits, o, seed++);
  }
}

TEST(Sampling, TheSameStreamGivesTheSameTokens) {
  const std::vector<float> logits{0.1f, 2.0f, -1.0f, 1.5f, 0.7f};
  tasks::SamplingOptions o;
  o.top_p = 0.95;
  Generator a(7), b(7);
  for (int i = 0; i < 200; ++i) EXPECT_EQ(tasks::pick_token(logits, o, a), tasks::pick_token(logits, o, b));
}

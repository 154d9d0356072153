// BatchedSampler (fm/tasks/batched_sampling.h): sequences of different prompt
// lengths and sampling options, decoded together, get token for token what
// sample() gives each alone with its seed; also when they join midway, when
// one is removed, and when their context windows fill up and restart.
#include <gtest/gtest.h>

#include <map>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/tasks/batched_sampling.h"
#include "helpers.h"

namespace fm::tasks {
namespace {

// A small GPT with weights large enough that its distributions are peaked
// (a fresh GPT-2 init is nearly uniform, which would test little).
std::unique_ptr<nn::GPT> make_model() {
  nn::GPTOptions o;
  o.vocab_size = 40, o.block_size = 16, o.n_layer = 2, o.n_head = 2, o.d_model = 32;
  Generator gen(11);
  auto m = std::make_unique<nn::GPT>(o, &gen);
  NoGradGuard ng;
  for (auto& p : m->named_parameters())
    if (p.tensor.dim() >= 2) p.tensor.copy_(randn(p.tensor.shape(), {}, &gen) * 0.3);
  m->eval();
  return m;
}

struct Request {
  std::vector<int32_t> prompt;
  SamplingOptions options;
  uint64_t seed;
};

SamplingOptions opts(int64_t max_new, double temperature, int64_t top_k, double top_p, int32_t stop = -1) {
  SamplingOptions o;
  o.max_new_tokens = max_new, o.temperature = temperature, o.top_k = top_k, o.top_p = top_p, o.stop_token = stop;
  return o;
}

std::vector<int32_t> alone(const nn::GPT& m, const Request& r) {
  Generator gen(r.seed);
  return sample(m, r.prompt, r.options, gen);
}

// Steps until every sequence has left; tokens by sequence id.
void drain(BatchedSampler& s, std::map<int64_t, std::vector<int32_t>>& got) {
  for (int guard = 0; s.size() > 0 && guard < 1000; ++guard)
    for (const auto& t : s.step()) got[t.id].push_back(t.token);
  ASSERT_EQ(s.size(), 0);
}

const std::vector<Request> kRequests = {
    {{3}, opts(10, 0.0, 0, 1.0), 1},                                  // greedy, one-token prompt
    {{1, 2, 3, 4, 5, 6, 7}, opts(25, 0.8, 5, 1.0), 2},                // runs past the window: restarts
    {{9, 8, 7}, opts(6, 1.2, 0, 0.9), 3},                             // top-p
    {{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, opts(12, 1.0, 0, 1.0), 4},  // nearly a full window
    {{2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38}, opts(4, 0.7, 10, 0.95), 5},  // cropped
    {{7, 1}, opts(30, 1.0, 0, 1.0, 13), 6},                           // a stop token
};

TEST(BatchedSampler, EachSequenceGetsWhatItGetsAlone) {
  const auto m = make_model();
  BatchedSampler s(*m);
  std::vector<int64_t> ids;
  for (const auto& r : kRequests) ids.push_back(s.add(r.prompt, r.options, r.seed));
  std::map<int64_t, std::vector<int32_t>> got;
  drain(s, got);
  for (size_t i = 0; i < kRequests.size(); ++i) EXPECT_EQ(got[ids[i]], alone(*m, kRequests[i])) << "request " << i;
  // Lengths differ, so rows left at different steps (and request 1 restarted its window).
  EXPECT_EQ(got[ids[1]].size(), 25u);
  EXPECT_EQ(got[ids[2]].size(), 6u);
}

TEST(BatchedSampler, JoiningMidwayAndRemovalKeepTheOthersExact) {
  const auto m = make_model();
  BatchedSampler s(*m);
  std::map<int64_t, std::vector<int32_t>> got;
  std::map<int64_t, size_t> which;  // sequence id -> request
  which[s.add(kRequests[1].prompt, kRequests[1].options, kRequests[1].seed)] = 1;
  const int64_t cancelled = s.add(kRequests[3].prompt, kRequests[3].options, 99);
  for (int i = 0; i < 3; ++i)
    for (const auto& t : s.step()) got[t.id].push_back(t.token);
  which[s.add(kRequests[0].prompt, kRequests[0].options, kRequests[0].seed)] = 0;
  which[s.add(kRequests[5].prompt, kRequests[5].options, kRequests[5].seed)] = 5;
  for (const auto& t : s.step()) got[t.id].push_back(t.token);
  s.remove(cancelled);
  s.remove(12345);  // unknown: ignored
  which[s.add(kRequests[2].prompt, kRequests[2].options, kRequests[2].seed)] = 2;
  drain(s, got);
  for (const auto& [id, i] : which) EXPECT_EQ(got[id], alone(*m, kRequests[i])) << "request " << i;
  EXPECT_EQ(got[cancelled].size(), 4u);
}

TEST(BatchedSampler, RefusesEmptyPromptsAndNoTokens) {
  const auto m = make_model();
  BatchedSampler s(*m);
  EXPECT_THROW(s.add({}, opts(4, 1.0, 0, 1.0), 1), Error);
  EXPECT_THROW(s.add({1}, opts(0, 1.0, 0, 1.0), 1), Error);
  EXPECT_EQ(s.size(), 0);
  EXPECT_TRUE(s.step().empty());
}

}  // namespace
}  // namespace fm::tasks

// Decoding (fm/tasks/decoding.h): greedy, beam search and sampling against
// brute force on a toy model whose next-token distribution depends on the
// whole prefix; and captioning through the KV cache (cross-attention keys
// computed once) against recomputing every step from scratch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/caption.h"
#include "fm/tasks/decoding.h"

namespace fm::tasks {
namespace {

constexpr int32_t kStart = 0, kStop = 1;

// Logits of a fixed random "language model": a hash of (sequence, prefix)
// seeds the V logits. Rows hold prefixes; select() reorders them.
class ToySource : public TokenSource {
 public:
  ToySource(int64_t rows, int64_t vocab, uint64_t seed, double spread = 3.0)
      : prefixes_(static_cast<size_t>(rows)), vocab_(vocab), seed_(seed), spread_(spread) {}
  // beam: rows per sequence (row r belongs to sequence offset + r / beam).
  void set_beam(int64_t beam, int64_t offset = 0) { beam_ = beam, offset_ = offset; }

  std::vector<float> logits_of(int64_t sequence, const std::vector<int32_t>& prefix) const {
    uint64_t h = seed_ * 1000003u + uint64_t(sequence) * 7919u;
    for (int32_t t : prefix) h = h * 1315423911u + uint64_t(t) + 1;
    Generator g(h);
    Tensor l = randn({vocab_}, DType::f32, &g) * spread_;
    return l.to_vector<float>();
  }

  Tensor next(const std::vector<int32_t>& tokens) override {
    std::vector<float> all;
    for (size_t r = 0; r < tokens.size(); ++r) {
      if (!(first_ && tokens[r] == kStart)) prefixes_[r].push_back(tokens[r]);
      const auto l = logits_of(offset_ + int64_t(r) / beam_, prefixes_[r]);
      all.insert(all.end(), l.begin(), l.end());
    }
    first_ = false;
    return tensor(all, {int64_t(tokens.size()), vocab_});
  }
  void select(const std::vector<int64_t>& rows) override {
    std::vector<std::vector<int32_t>> p;
    for (int64_t r : rows) p.push_back(prefixes_[size_t(r)]);
    prefixes_ = p;
  }

 private:
  std::vector<std::vector<int32_t>> prefixes_;
  int64_t vocab_, beam_ = 1, offset_ = 0;
  uint64_t seed_;
  double spread_;
  bool first_ = true;
};

double log_prob(const std::vector<float>& logits, int32_t t) {
  double top = *std::max_element(logits.begin(), logits.end()), z = 0;
  for (float l : logits) z += std::exp(double(l) - top);
  return double(logits[size_t(t)]) - top - std::log(z);
}

// Every sequence up to max_tokens (ended by the stop token or cut at
// max_tokens); the best by sum of log-probs / length^penalty.
Decoded brute_force(const ToySource& model, int64_t sequence, int64_t vocab, int64_t max_tokens, double penalty) {
  Decoded best;
  best.score = -INFINITY;
  std::function<void(std::vector<int32_t>&, double)> walk = [&](std::vector<int32_t>& prefix, double sum) {
    auto logits = model.logits_of(sequence, prefix);
    logits[kStart] -= 1e4f;  // as NoStartSource bans it
    for (int32_t t = 0; t < vocab; ++t) {
      if (t == kStart) continue;  // never generated in this toy (its logit stays, so it takes mass)
      const double s = sum + log_prob(logits, t);
      const size_t len = prefix.size() + 1;
      const double score = s / std::pow(double(len), penalty);
      if (t == kStop || int64_t(len) == max_tokens) {
        std::vector<int32_t> tokens = prefix;
        if (t != kStop) tokens.push_back(t);
        if (score > best.score) best = {tokens, score, t == kStop};
        continue;
      }
      prefix.push_back(t);
      walk(prefix, s);
      prefix.pop_back();
    }
  };
  std::vector<int32_t> prefix;
  walk(prefix, 0.0);
  return best;
}

// The toy with the start token all but banned (the brute force leaves it out).
class NoStartSource : public ToySource {
 public:
  using ToySource::ToySource;
  Tensor next(const std::vector<int32_t>& tokens) override {
    Tensor l = ToySource::next(tokens);
    Tensor col = zeros({l.size(1)});
    col.narrow(0, kStart, 1).fill_(-1e4);
    return l + col;
  }
};

TEST(Decoding, GreedyTakesTheMostLikelyTokenEachStep) {
  const int64_t V = 6, B = 3, max_tokens = 7;
  ToySource source(B, V, 11);
  DecodeOptions o;
  o.max_tokens = max_tokens;
  const auto out = decode(source, B, kStart, kStop, o);
  ToySource ref(B, V, 11);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> prefix;
    double sum = 0;
    for (int64_t i = 0; i < max_tokens; ++i) {
      const auto l = ref.logits_of(b, prefix);
      const int32_t t = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
      sum += log_prob(l, t);
      if (t == kStop) break;
      prefix.push_back(t);
    }
    EXPECT_EQ(out[size_t(b)].tokens, prefix) << "sequence " << b;
    EXPECT_NEAR(out[size_t(b)].score, sum, 1e-9);
  }
}

TEST(Decoding, WideBeamFindsTheExhaustiveBest) {
  const int64_t V = 4, B = 3, max_tokens = 4;
  for (double penalty : {0.0, 1.0}) {
    for (uint64_t seed : {1u, 2u, 3u}) {
      DecodeOptions o;
      o.max_tokens = max_tokens;
      o.beam = 64;  // >= every live prefix: the search keeps them all
      o.length_penalty = penalty;
      o.early_stopping = false;
      NoStartSource source(B * o.beam, V, seed, 2.0);
      source.set_beam(o.beam);
      const auto out = decode(source, B, kStart, kStop, o);
      NoStartSource ref(1, V, seed, 2.0);
      for (int64_t b = 0; b < B; ++b) {
        // The brute force's distributions include the banned start token's tiny mass, as the search's do.
        const Decoded want = brute_force(ref, b, V, max_tokens, penalty);
        EXPECT_EQ(out[size_t(b)].tokens, want.tokens) << "penalty " << penalty << " seed " << seed << " seq " << b;
        EXPECT_NEAR(out[size_t(b)].score, want.score, 1e-4);
        EXPECT_EQ(out[size_t(b)].stopped, want.stopped);
      }
    }
  }
}

TEST(Decoding, BatchedSequencesMatchTheirSingleRuns) {
  const int64_t V = 7, B = 3, W = 3;
  DecodeOptions o;
  o.beam = W;
  o.max_tokens = 6;
  ToySource all(B * W, V, 9);
  all.set_beam(W);
  const auto together = decode(all, B, kStart, kStop, o);
  for (int64_t b = 0; b < B; ++b) {
    ToySource one(W, V, 9);
    one.set_beam(W, b);
    const auto alone = decode(one, 1, kStart, kStop, o);
    EXPECT_EQ(alone[0].tokens, together[size_t(b)].tokens) << b;
    EXPECT_NEAR(alone[0].score, together[size_t(b)].score, 1e-9);
  }
}

// A source that prefers to repeat "2 3" forever.
class Repeater : public TokenSource {
 public:
  explicit Repeater(int64_t rows) : last_(static_cast<size_t>(rows), kStart) {}
  Tensor next(const std::vector<int32_t>& tokens) override {
    std::vector<float> v;
    for (size_t r = 0; r < tokens.size(); ++r) {
      last_[r] = tokens[r];
      std::vector<float> l(6, 0.0f);
      l[size_t(tokens[r] == 2 ? 3 : 2)] = 5.0f;  // after 2 comes 3, after anything else 2
      l[4] = 1.0f;
      v.insert(v.end(), l.begin(), l.end());
    }
    return tensor(v, {int64_t(tokens.size()), 6});
  }
  void select(const std::vector<int64_t>& rows) override {
    std::vector<int32_t> l;
    for (int64_t r : rows) l.push_back(last_[size_t(r)]);
    last_ = l;
  }
  std::vector<int32_t> last_;
};

bool repeats_ngram(const std::vector<int32_t>& t, size_t n) {
  std::map<std::vector<int32_t>, int> seen;
  for (size_t i = 0; i + n <= t.size(); ++i)
    if (++seen[std::vector<int32_t>(t.begin() + long(i), t.begin() + long(i + n))] > 1) return true;
  return false;
}

TEST(Decoding, NoRepeatNgramHoldsInGreedyAndBeam) {
  for (int64_t beam : {1, 3}) {
    DecodeOptions o;
    o.beam = beam;
    o.max_tokens = 10;
    Repeater free_run(beam);
    const auto loose = decode(free_run, 1, kStart, kStop, o);
    EXPECT_TRUE(repeats_ngram(loose[0].tokens, 2)) << "the source must want to repeat";
    o.no_repeat_ngram = 2;
    Repeater banned(beam);
    const auto out = decode(banned, 1, kStart, kStop, o);
    EXPECT_FALSE(repeats_ngram(out[0].tokens, 2)) << "beam " << beam;
    EXPECT_GE(out[0].tokens.size(), 3u);
  }
}

TEST(Decoding, SamplingIsReproducibleAndRespectsTopK) {
  const int64_t V = 9, B = 5;
  DecodeOptions o;
  o.sample = true;
  o.max_tokens = 8;
  o.top_k = 1;  // top-1 sampling is greedy
  Generator g1(3);
  ToySource s1(B, V, 4);
  const auto top1 = decode(s1, B, kStart, kStop, o, &g1);
  DecodeOptions greedy;
  greedy.max_tokens = 8;
  ToySource s2(B, V, 4);
  const auto want = decode(s2, B, kStart, kStop, greedy);
  for (int64_t b = 0; b < B; ++b) EXPECT_EQ(top1[size_t(b)].tokens, want[size_t(b)].tokens);
  o.top_k = 0;
  o.temperature = 2.0;
  Generator ga(7), gb(7);
  ToySource sa(B, V, 4), sb(B, V, 4);
  const auto a = decode(sa, B, kStart, kStop, o, &ga), b = decode(sb, B, kStart, kStop, o, &gb);
  bool differs_from_greedy = false;
  for (int64_t i = 0; i < B; ++i) {
    EXPECT_EQ(a[size_t(i)].tokens, b[size_t(i)].tokens);
    differs_from_greedy = differs_from_greedy || a[size_t(i)].tokens != want[size_t(i)].tokens;
  }
  EXPECT_TRUE(differs_from_greedy) << "hot sampling should leave the greedy path somewhere";
}

TEST(Decoding, RejectsBadOptions) {
  ToySource s(1, 4, 1);
  DecodeOptions o;
  o.beam = 0;
  EXPECT_THROW(decode(s, 1, kStart, kStop, o), Error);
  o.beam = 2;
  o.sample = true;
  EXPECT_THROW(decode(s, 1, kStart, kStop, o), Error);
  o = DecodeOptions();
  o.max_tokens = 0;
  EXPECT_THROW(decode(s, 1, kStart, kStop, o), Error);
}

// Recomputes every row's logits from its whole prefix: what the KV cache
// must reproduce.
class RecomputeSource : public TokenSource {
 public:
  RecomputeSource(const CaptionModel& m, const Tensor& images, int64_t beam) : m_(m) {
    Tensor rows = (arange(0.0, double(images.size(0) * beam), 1.0, TensorOptions(DType::i64)) / beam).to(DType::i64);
    images_ = index_select(images, 0, rows);
    prefixes_.resize(size_t(images_.size(0)));
  }
  Tensor next(const std::vector<int32_t>& tokens) override {
    std::vector<Tensor> out;
    for (size_t r = 0; r < tokens.size(); ++r) {
      prefixes_[r].push_back(tokens[r]);
      std::vector<int64_t> ids(prefixes_[r].begin(), prefixes_[r].end());
      Tensor logits = m_.forward(images_.narrow(0, int64_t(r), 1), tensor(ids, {1, int64_t(ids.size())})).logits;
      out.push_back(logits.select(1, int64_t(ids.size()) - 1));
    }
    return cat(out, 0);
  }
  void select(const std::vector<int64_t>& rows) override {
    std::vector<std::vector<int32_t>> p;
    for (int64_t r : rows) p.push_back(prefixes_[size_t(r)]);
    prefixes_ = p;
  }

 private:
  const CaptionModel& m_;
  Tensor images_;
  std::vector<std::vector<int32_t>> prefixes_;
};

TEST(Decoding, CaptionBeamSearchWithTheCacheEqualsFullRecomputation) {
  for (const char* layout : {"cross", "single"}) {
    CaptionOptions o;
    o.layout = layout;
    o.image_size = 8;
    o.patch_size = 4;
    o.vision_width = 16;
    o.vision_layers = 1;
    o.vision_heads = 2;
    o.vocab_size = 12;
    o.context_length = 9;
    o.text_width = 16;
    o.text_layers = 2;
    o.text_heads = 2;
    Generator init(21);
    CaptionModel m(o, &init);
    // Larger embeddings than the init's, so the untrained model's choices are not near-ties.
    NoGradGuard ng;
    m.token_embedding->weight.copy_(m.token_embedding->weight * 40.0);
    m.eval();
    Generator g(5);
    const Tensor images = randn({3, 3, 8, 8}, DType::f32, &g);
    DecodeOptions d;
    d.beam = 3;
    d.max_tokens = 8;
    d.no_repeat_ngram = 3;
    const auto cached = caption_images(m, images, 1, d);
    RecomputeSource full(m, images, d.beam);
    const auto want = decode(full, 3, 1, 1, d);
    for (size_t b = 0; b < 3; ++b) {
      EXPECT_EQ(cached[b].tokens, want[b].tokens) << layout << " image " << b;
      EXPECT_NEAR(cached[b].score, want[b].score, 1e-4) << layout << " image " << b;
    }
  }
}

}  // namespace
}  // namespace fm::tasks

#include "fm/tasks/decoding.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "fm/error.h"
#include "fm/tasks/sampling.h"

namespace fm::tasks {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Row r of logits [R, V] as log-probabilities.
std::vector<double> log_probs(const float* row, int64_t V) {
  std::vector<double> lp(static_cast<size_t>(V));
  const double top = *std::max_element(row, row + V);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) total += std::exp(double(row[i]) - top);
  const double norm = top + std::log(total);
  for (int64_t i = 0; i < V; ++i) lp[size_t(i)] = double(row[i]) - norm;
  return lp;
}

// Sets to -inf every token that would repeat an n-gram of `tokens`.
void ban_repeats(const std::vector<int32_t>& tokens, int64_t n, std::vector<double>& lp) {
  const int64_t len = int64_t(tokens.size());
  if (n <= 0 || len + 1 < n) return;
  // The n - 1 tokens the next one would complete an n-gram with.
  const auto tail = tokens.end() - (n - 1);
  for (int64_t s = 0; s + n <= len; ++s)
    if (std::equal(tokens.begin() + s, tokens.begin() + s + n - 1, tail)) lp[size_t(tokens[size_t(s + n - 1)])] = kNegInf;
}

struct Hypothesis {
  std::vector<int32_t> tokens;
  double sum = 0;      // sum of log-probs
  bool ended = false;  // by the stop token
};

double penalised(double sum, size_t length, double penalty) { return sum / std::pow(double(length), penalty); }

// The best `width` ended hypotheses of one sequence.
struct Finished {
  std::vector<std::pair<double, Hypothesis>> hyps;  // (score, hypothesis)
  void add(double score, Hypothesis h, int64_t width) {
    hyps.emplace_back(score, std::move(h));
    std::sort(hyps.begin(), hyps.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    if (int64_t(hyps.size()) > width) hyps.pop_back();
  }
  double worst() const { return hyps.back().first; }
};

std::vector<Decoded> greedy_or_sample(TokenSource& source, int64_t batch, int32_t start, int32_t stop,
                                      const DecodeOptions& o, Generator* gen) {
  std::vector<Decoded> out(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int32_t> feed(static_cast<size_t>(batch), start);
  SamplingOptions so;
  so.temperature = o.sample ? o.temperature : 0.0;
  so.top_k = o.top_k;
  so.top_p = o.top_p;
  for (int64_t step = 0; step < o.max_tokens; ++step) {
    const Tensor logits = source.next(feed).to(Device()).to(DType::f32).contiguous();
    const int64_t V = logits.size(1);
    const float* data = logits.data<float>();
    for (int64_t b = 0; b < batch; ++b) {
      if (done[size_t(b)]) continue;
      Decoded& d = out[size_t(b)];
      std::vector<double> lp = log_probs(data + b * V, V);
      ban_repeats(d.tokens, o.no_repeat_ngram, lp);
      std::vector<float> allowed(lp.begin(), lp.end());  // log-probs are logits of the same distribution
      const int32_t t = pick_token(allowed, so, *gen);
      d.score += lp[size_t(t)];
      feed[size_t(b)] = t;
      if (t == stop) d.stopped = true;
      else d.tokens.push_back(t);
      done[size_t(b)] = d.stopped || step + 1 == o.max_tokens;
    }
    if (std::all_of(done.begin(), done.end(), [](bool x) { return x; })) break;
  }
  return out;
}

std::vector<Decoded> beam_search(TokenSource& source, int64_t batch, int32_t start, int32_t stop, const DecodeOptions& o) {
  const int64_t W = o.beam;
  std::vector<std::vector<Hypothesis>> beams(static_cast<size_t>(batch), std::vector<Hypothesis>(size_t(W)));
  std::vector<Finished> finished(static_cast<size_t>(batch));
  std::vector<bool> done(static_cast<size_t>(batch), false);
  std::vector<int32_t> feed(static_cast<size_t>(batch * W), start);
  for (int64_t step = 0; step < o.max_tokens; ++step) {
    const Tensor logits = source.next(feed).to(Device()).to(DType::f32).contiguous();
    const int64_t V = logits.size(1);
    const float* data = logits.data<float>();
    std::vector<int64_t> rows(static_cast<size_t>(batch * W));
    std::iota(rows.begin(), rows.end(), 0);
    for (int64_t b = 0; b < batch; ++b) {
      if (done[size_t(b)]) continue;
      auto& bb = beams[size_t(b)];
      // Candidates (score, beam, token); at the first step the beams are equal, so only beam 0 extends.
      std::vector<std::tuple<double, int64_t, int32_t>> cand;
      for (int64_t j = 0; j < (step == 0 ? 1 : W); ++j) {
        if (bb[size_t(j)].sum == kNegInf) continue;  // a filler beam
        std::vector<double> lp = log_probs(data + (b * W + j) * V, V);
        ban_repeats(bb[size_t(j)].tokens, o.no_repeat_ngram, lp);
        for (int64_t t = 0; t < V; ++t)
          if (lp[size_t(t)] > kNegInf) cand.emplace_back(bb[size_t(j)].sum + lp[size_t(t)], j, int32_t(t));
      }
      const size_t keep = std::min(cand.size(), size_t(2 * W));
      std::partial_sort(cand.begin(), cand.begin() + long(keep), cand.end(),
                        [](const auto& a, const auto& c) { return std::get<0>(a) > std::get<0>(c); });
      std::vector<Hypothesis> next;
      for (size_t rank = 0; rank < keep && int64_t(next.size()) < W; ++rank) {
        const auto& [sum, j, t] = cand[rank];
        if (t == stop) {  // an ending among the best W candidates becomes a hypothesis
          if (int64_t(rank) < W) {
            const double score = penalised(sum, bb[size_t(j)].tokens.size() + 1, o.length_penalty);
            finished[size_t(b)].add(score, {bb[size_t(j)].tokens, sum, true}, W);
          }
          continue;
        }
        Hypothesis h{bb[size_t(j)].tokens, sum};
        h.tokens.push_back(t);
        rows[size_t(b * W) + next.size()] = b * W + j;
        next.push_back(std::move(h));
      }
      if (next.empty()) {  // every continuation banned or ended: nothing left to extend
        done[size_t(b)] = true;
        continue;
      }
      while (int64_t(next.size()) < W) {  // too few candidates (tiny vocabularies): repeat the last, never chosen
        rows[size_t(b * W) + next.size()] = rows[size_t(b * W) + next.size() - 1];
        next.push_back(next.back());
        next.back().sum = kNegInf;
      }
      bb = std::move(next);
      const Finished& f = finished[size_t(b)];
      if (int64_t(f.hyps.size()) >= W)
        done[size_t(b)] = o.early_stopping ||
                          f.worst() >= penalised(bb[0].sum, bb[0].tokens.size(), o.length_penalty);
    }
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 0; j < W; ++j) {
        const auto& h = beams[size_t(b)][size_t(j)];
        feed[size_t(b * W + j)] = h.tokens.empty() ? start : h.tokens.back();
      }
    if (std::all_of(done.begin(), done.end(), [](bool x) { return x; })) break;
    source.select(rows);
  }
  std::vector<Decoded> out(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    Finished& f = finished[size_t(b)];
    if (!done[size_t(b)])  // out of tokens: the running beams compete with the ended ones
      for (const auto& h : beams[size_t(b)])
        if (h.sum > kNegInf) f.add(penalised(h.sum, h.tokens.size(), o.length_penalty), h, W);
    if (f.hyps.empty()) continue;
    out[size_t(b)] = {f.hyps[0].second.tokens, f.hyps[0].first, f.hyps[0].second.ended};
  }
  return out;
}

}  // namespace

std::vector<Decoded> decode(TokenSource& source, int64_t batch, int32_t start_token, int32_t stop_token,
                            const DecodeOptions& o, Generator* gen) {
  if (o.beam < 1) error("decode: beam must be at least 1, got ", o.beam);
  if (o.max_tokens < 1) error("decode: max_tokens must be at least 1, got ", o.max_tokens);
  if (o.sample && o.beam > 1) error("decode: sampling takes beam 1, got ", o.beam);
  if (o.sample && !gen) error("decode: sampling needs a generator");
  if (batch < 1) return {};
  Generator unused(0);
  return o.beam == 1 ? greedy_or_sample(source, batch, start_token, stop_token, o, gen ? gen : &unused)
                     : beam_search(source, batch, start_token, stop_token, o);
}

}  // namespace fm::tasks

#include "fm/tasks/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "fm/autograd.h"
#include "fm/factory.h"

namespace fm::tasks {

int32_t pick_token(const std::vector<float>& logits, const SamplingOptions& o, Generator& gen) {
  const int32_t v = int32_t(logits.size());
  if (o.temperature <= 0) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int32_t> order(static_cast<size_t>(v));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
  size_t keep = o.top_k > 0 ? std::min<size_t>(size_t(o.top_k), order.size()) : order.size();
  std::vector<double> p(keep);
  const double top = logits[size_t(order[0])];
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i] = std::exp((logits[size_t(order[i])] - top) / o.temperature);
  if (o.top_p < 1.0) {
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += p[i] / total;
      if (cum >= o.top_p) {
        keep = i + 1;
        break;
      }
    }
    total = std::accumulate(p.begin(), p.begin() + long(keep), 0.0);
  }
  // One uniform draw from the Philox stream picks from the kept mass.
  const double u = rand({1}, DType::f64, &gen).item() * total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return order[i];
  }
  return order[keep - 1];
}

std::vector<int32_t> sample(const nn::GPT& model, const std::vector<int32_t>& prompt, const SamplingOptions& o,
                            Generator& gen) {
  if (prompt.empty()) error("sample: the prompt needs at least one token");
  NoGradGuard ng;
  const Device device = model.parameters().front().device();
  const int64_t block = model.options.block_size;
  std::vector<int32_t> context(prompt.end() - std::min<long>(long(prompt.size()), long(block)), prompt.end());
  std::vector<nn::KVCache> caches;
  std::vector<int32_t> out;
  std::vector<int32_t> feed = context;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    if (int64_t(context.size()) > block) {  // window full: restart the cache on the last block - 1 tokens
      context.erase(context.begin(), context.end() - (block - 1));
      caches.clear();
      feed = context;
    }
    std::vector<int64_t> ids(feed.begin(), feed.end());
    Tensor logits = model.forward(tensor(ids, {1, int64_t(ids.size())}).to(device), &caches);
    const int64_t V = logits.size(-1);
    const int32_t next = pick_token(logits.select(1, logits.size(1) - 1).reshape({V}).to_vector<float>(), o, gen);
    out.push_back(next);
    if (next == o.stop_token) break;
    context.push_back(next);
    feed = {next};
  }
  return out;
}

}  // namespace fm::tasks

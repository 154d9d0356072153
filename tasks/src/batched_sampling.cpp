#include "fm/tasks/batched_sampling.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/ops.h"

namespace fm::tasks {

BatchedSampler::BatchedSampler(const nn::GPT& model)
    : model_(model), device_(model.parameters().front().device()) {}

int64_t BatchedSampler::add(const std::vector<int32_t>& prompt, const SamplingOptions& o, uint64_t seed) {
  if (prompt.empty()) error("BatchedSampler: the prompt needs at least one token");
  if (o.max_new_tokens < 1) error("BatchedSampler: max_new_tokens must be at least 1, got ", o.max_new_tokens);
  const int64_t block = model_.options.block_size;
  Row r;
  r.id = next_id_++;
  r.context.assign(prompt.end() - std::min<long>(long(prompt.size()), long(block)), prompt.end());
  r.options = o;
  r.gen = Generator(seed);
  rows_.push_back(std::move(r));
  return rows_.back().id;
}

void BatchedSampler::remove(int64_t id) {
  std::vector<int64_t> keep;
  int64_t cache_row = 0;
  bool found = false;
  for (const Row& r : rows_) {
    if (r.id == id) found = true;
    if (!r.cached) continue;
    if (r.id != id) keep.push_back(cache_row);
    ++cache_row;
  }
  if (!found) return;
  keep_cache_rows(keep);
  rows_.erase(std::find_if(rows_.begin(), rows_.end(), [&](const Row& r) { return r.id == id; }));
  trim_cache();
}

// Keeps cache rows `rows` (in that order) of every layer; none: an empty cache.
void BatchedSampler::keep_cache_rows(const std::vector<int64_t>& rows) {
  if (caches_.empty() || !caches_[0].k.defined()) return;
  if (rows.empty()) {
    caches_.clear();
    return;
  }
  if (int64_t(rows.size()) == caches_[0].k.size(0)) return;  // rows only ever leave: same size, same rows
  nn::select_cache_rows(caches_, tensor(rows, {int64_t(rows.size())}).to(device_));
}

// Drops the columns on the left that no row uses any more.
void BatchedSampler::trim_cache() {
  if (caches_.empty() || !caches_[0].k.defined()) return;
  int64_t longest = 0;
  for (const Row& r : rows_)
    if (r.cached) longest = std::max(longest, int64_t(r.context.size()) - 1);
  const int64_t L = caches_[0].k.size(2);
  if (longest >= L) return;
  for (nn::KVCache& c : caches_) c.k = c.k.narrow(2, L - longest, longest), c.v = c.v.narrow(2, L - longest, longest);
}

// One forward of the first `rows` rows (all cached) on their last tokens;
// returns their next-token logits, row after row.
std::vector<float> BatchedSampler::step_cached_rows(int64_t rows) {
  const int64_t L = caches_[0].k.size(2);
  std::vector<int64_t> ids, positions;
  std::vector<int32_t> ranges;  // (lo, hi) of each row's keys, the new one included
  for (int64_t b = 0; b < rows; ++b) {
    const Row& r = rows_[size_t(b)];
    const int64_t cached = int64_t(r.context.size()) - 1;
    ids.push_back(r.context.back());
    positions.push_back(cached);
    ranges.push_back(int32_t(L - cached));
    ranges.push_back(int32_t(L + 1));
  }
  // GPT::forward with a position per row and the rows' key ranges as the mask.
  const Tensor pos = tensor(positions, {rows, 1}).to(device_);
  const Tensor x = model_.wte->forward(tensor(ids, {rows, 1}).to(device_)) + model_.wpe->forward(pos);
  nn::BlockInputs in;
  in.mask = tensor(ranges, {rows, 1, 1, 2}).to(device_);
  const Tensor h = model_.transformer->forward(x, in, &caches_);
  const Tensor logits = model_.lm_head ? model_.lm_head->forward(h) : linear(h, model_.wte->weight);
  return logits.to(Device::cpu()).to(DType::f32).contiguous().to_vector<float>();
}

// Runs row's whole context alone, as sample() does, and appends its cache
// to the shared one; returns its next-token logits.
std::vector<float> BatchedSampler::prefill(Row& row) {
  std::vector<nn::KVCache> own;
  const std::vector<int64_t> ids(row.context.begin(), row.context.end());
  const Tensor logits = model_.forward(tensor(ids, {1, int64_t(ids.size())}).to(device_), &own);
  const int64_t V = logits.size(-1);
  if (caches_.empty() || !caches_[0].k.defined()) {
    caches_ = std::move(own);
  } else {
    const int64_t L = caches_[0].k.size(2), l = own[0].k.size(2);
    auto left_pad = [](const Tensor& t, int64_t n) { return n > 0 ? pad(t, {0, 0, n, 0}) : t; };
    for (size_t i = 0; i < caches_.size(); ++i) {
      caches_[i].k = cat({left_pad(caches_[i].k, l - L), left_pad(own[i].k, L - l)}, 0);
      caches_[i].v = cat({left_pad(caches_[i].v, l - L), left_pad(own[i].v, L - l)}, 0);
    }
  }
  row.cached = true;
  return logits.select(1, logits.size(1) - 1).reshape({V}).to(Device::cpu()).to(DType::f32).to_vector<float>();
}

std::vector<BatchedSampler::Token> BatchedSampler::step() {
  NoGradGuard ng;
  const int64_t block = model_.options.block_size;
  // Rows whose window is full leave the shared cache, to restart alone on the
  // last block - 1 tokens (as sample() does).
  std::vector<int64_t> keep;
  int64_t cache_row = 0;
  for (Row& r : rows_) {
    if (!r.cached) continue;
    if (int64_t(r.context.size()) > block) {
      r.context.erase(r.context.begin(), r.context.end() - (block - 1));
      r.cached = false;
    } else {
      keep.push_back(cache_row);
    }
    ++cache_row;
  }
  keep_cache_rows(keep);
  std::stable_partition(rows_.begin(), rows_.end(), [](const Row& r) { return r.cached; });
  trim_cache();
  const int64_t n_cached = int64_t(keep.size());

  std::vector<std::vector<float>> logits(rows_.size());
  if (n_cached > 0) {
    const std::vector<float> all = step_cached_rows(n_cached);
    const size_t V = all.size() / size_t(n_cached);
    for (size_t b = 0; b < size_t(n_cached); ++b)
      logits[b].assign(all.begin() + long(b * V), all.begin() + long((b + 1) * V));
  }
  for (size_t b = size_t(n_cached); b < rows_.size(); ++b) logits[b] = prefill(rows_[b]);

  std::vector<Token> out;
  std::vector<int64_t> staying;
  for (size_t b = 0; b < rows_.size(); ++b) {
    Row& r = rows_[b];
    const int32_t next = pick_token(logits[b], r.options, r.gen);
    ++r.emitted;
    const bool last = next == r.options.stop_token || r.emitted >= r.options.max_new_tokens;
    out.push_back({r.id, next, last});
    r.context.push_back(next);
    if (!last) staying.push_back(int64_t(b));  // every row is cached now: row b is cache row b
  }
  keep_cache_rows(staying);
  std::vector<Row> kept;
  for (int64_t b : staying) kept.push_back(std::move(rows_[size_t(b)]));
  rows_ = std::move(kept);
  trim_cache();
  return out;
}

}  // namespace fm::tasks

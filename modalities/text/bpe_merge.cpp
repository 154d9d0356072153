#include "bpe_merge.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <queue>
#include <utility>

namespace fm::text {
namespace {

constexpr int32_t kNoMerge = std::numeric_limits<int32_t>::max();
// Up to this length a piece is merged on the stack by scanning for the lowest
// rank (quadratic, but fastest for words); longer ones use a heap.
constexpr size_t kShortPiece = 64;

void merge_short(std::string_view piece, const TokenTable& table, std::vector<int32_t>& out) {
  const size_t n = piece.size();
  uint32_t start[kShortPiece + 1];  // start[i]: first byte of part i; start[parts] = n
  int32_t id[kShortPiece];          // token of part i
  int32_t rank[kShortPiece];        // token of parts i and i+1 together, or kNoMerge
  size_t parts = n;
  for (size_t i = 0; i < n; ++i) {
    start[i] = static_cast<uint32_t>(i);
    id[i] = table.byte_id(static_cast<unsigned char>(piece[i]));
  }
  start[n] = static_cast<uint32_t>(n);
  auto pair_rank = [&](size_t i) {
    const int32_t t = table.find(piece.substr(start[i], start[i + 2] - start[i]));
    return t == TokenTable::kNone ? kNoMerge : t;
  };
  for (size_t i = 0; i + 1 < parts; ++i) rank[i] = pair_rank(i);
  while (parts > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < parts; ++i)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == kNoMerge) break;
    id[best] = rank[best];
    // Drop part best + 1.
    std::copy(start + best + 2, start + parts + 1, start + best + 1);
    std::copy(id + best + 2, id + parts, id + best + 1);
    if (best + 2 < parts - 1) std::copy(rank + best + 2, rank + parts - 1, rank + best + 1);
    --parts;
    if (best + 1 < parts) rank[best] = pair_rank(best);
    if (best > 0) rank[best - 1] = pair_rank(best - 1);
  }
  out.insert(out.end(), id, id + parts);
}

// Same rule in O(n log n): parts form a linked list, candidate merges wait in
// a min-heap of (rank, start) and are skipped when stale.
void merge_long(std::string_view piece, const TokenTable& table, std::vector<int32_t>& out) {
  const size_t n = piece.size();
  std::vector<uint32_t> next(n), prev(n);  // neighbours by start offset; next may be n
  std::vector<int32_t> id(n), rank(n, kNoMerge);
  for (size_t i = 0; i < n; ++i) {
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = static_cast<uint32_t>(i - 1);  // wraps for i = 0: never read there
    id[i] = table.byte_id(static_cast<unsigned char>(piece[i]));
  }
  using Candidate = std::pair<int32_t, uint32_t>;
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto update_rank = [&](uint32_t i) {
    rank[i] = kNoMerge;
    if (next[i] < n) {
      const uint32_t end = next[next[i]];
      const int32_t t = table.find(piece.substr(i, end - i));
      if (t != TokenTable::kNone) {
        rank[i] = t;
        heap.emplace(t, i);
      }
    }
  };
  for (uint32_t i = 0; i < n; ++i) update_rank(i);
  while (!heap.empty()) {
    const auto [r, i] = heap.top();
    heap.pop();
    if (rank[i] != r) continue;  // stale: the pair at i changed since
    const uint32_t j = next[i];  // part j joins part i
    id[i] = r;
    rank[j] = kNoMerge;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    update_rank(i);
    if (i > 0) update_rank(prev[i]);
  }
  for (size_t i = 0; i < n; i = next[i]) out.push_back(id[i]);
}

}  // namespace

void bpe_merge(std::string_view piece, const TokenTable& table, std::vector<int32_t>& out) {
  if (piece.size() <= kShortPiece) {
    merge_short(piece, table, out);
  } else {
    merge_long(piece, table, out);
  }
}

}  // namespace fm::text

#include "layout.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <utility>

#include "fm/tensor_impl.h"

namespace fm::optim::detail {

int64_t padding_between(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || !a.is_contiguous() || !b.is_contiguous()) return -1;
  if (a.impl()->storage != b.impl()->storage || a.dtype() != b.dtype()) return -1;
  const int64_t gap = b.storage_offset() - (a.storage_offset() + a.numel());
  return gap >= 0 && gap < kMaxPadding ? gap : -1;
}

Tensor span_from(const Tensor& t, int64_t length) { return make_view(t, Shape{length}, Shape{1}, t.storage_offset()); }

std::vector<size_t> address_order(const std::vector<Tensor>& ts) {
  std::map<const Storage*, size_t> first_seen;
  for (const Tensor& t : ts) first_seen.emplace(t.impl()->storage.get(), first_seen.size());
  std::vector<size_t> order(ts.size());
  std::iota(order.begin(), order.end(), size_t(0));
  auto key = [&](size_t i) {
    return std::make_pair(first_seen.at(ts[i].impl()->storage.get()), ts[i].storage_offset());
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  return order;
}

std::vector<Tensor> merge_neighbours(const std::vector<Tensor>& given) {
  std::vector<Tensor> ts;
  for (size_t i : address_order(given)) ts.push_back(given[i]);
  std::vector<Tensor> out;
  size_t i = 0;
  while (i < ts.size()) {
    size_t j = i + 1;
    while (j < ts.size() && padding_between(ts[j - 1], ts[j]) >= 0) ++j;
    if (j == i + 1) {
      out.push_back(ts[i]);
    } else {
      const Tensor& last = ts[j - 1];
      out.push_back(span_from(ts[i], last.storage_offset() + last.numel() - ts[i].storage_offset()));
    }
    i = j;
  }
  return out;
}

}  // namespace fm::optim::detail

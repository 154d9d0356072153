#include "fm/caching_allocator.h"

namespace fm {

size_t CachingAllocator::size_class(size_t n) {
  constexpr size_t kAlign = 64;
  if (n == 0) n = 1;
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  const size_t p = size_t(1) << (63 - __builtin_clzll(n));
  const size_t step = p / 8;
  return (n + step - 1) / step * step;
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t cls = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.allocs;
  void* p = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
  } else {
    p = system_allocate(cls);
    ++stats_.system_allocs;
    stats_.reserved += cls;
  }
  stats_.allocated += cls;
  if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
  return p;
}

void CachingAllocator::deallocate(void* p, size_t nbytes) {
  if (!p) return;
  const size_t cls = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.allocated -= cls;
  free_[cls].push_back(p);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [cls, list] : free_) {
    for (void* p : list) system_free(p);
    stats_.reserved -= cls * list.size();
  }
  free_.clear();
}

}  // namespace fm

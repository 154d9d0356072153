// Caching CPU allocator: freed blocks are kept in per-size-class lists and
// handed out again, so a training step that repeats the same shapes stops
// calling the system allocator after its first iteration.
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fm/allocator.h"
#include "fm/error.h"

namespace fm {
namespace {

constexpr size_t kAlign = 64;

// Size classes: multiples of 64 B below 4 KiB, then 8 steps per power of two
// (at most 12.5% slack).
size_t size_class(size_t n) {
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  size_t p = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = p / 8;
  return (n + step - 1) / step * step;
}

class CpuCachingAllocator final : public Allocator {
 public:
  ~CpuCachingAllocator() override { empty_cache(); }

  void* allocate(size_t nbytes) override {
    const size_t cls = size_class(nbytes == 0 ? 1 : nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.allocs;
    void* p = nullptr;
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
    } else {
      p = std::aligned_alloc(kAlign, cls);
      if (!p) error("cpu allocator: out of memory allocating ", cls, " bytes");
      ++stats_.system_allocs;
      stats_.reserved += cls;
    }
    stats_.allocated += cls;
    if (stats_.allocated > stats_.peak_allocated) stats_.peak_allocated = stats_.allocated;
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    const size_t cls = size_class(nbytes == 0 ? 1 : nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    stats_.allocated -= cls;
    free_[cls].push_back(p);
  }

  AllocatorStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_allocated = stats_.allocated;
  }

  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [cls, list] : free_) {
      for (void* p : list) std::free(p);
      stats_.reserved -= cls * list.size();
    }
    free_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

Allocator* g_allocators[kNumDeviceTypes] = {};

}  // namespace

Allocator* cpu_allocator() {
  // Never destroyed: tensors in static objects may outlive any exit order.
  static auto* a = new CpuCachingAllocator();
  return a;
}

Allocator* allocator_for(Device d) {
  if (d.is_cpu()) return cpu_allocator();
  Allocator* a = g_allocators[int(d.type)];
  if (!a) error("no allocator for device ", d.str(), " (was libfm built with its backend?)");
  return a;
}

void set_allocator(DeviceType t, Allocator* a) { g_allocators[int(t)] = a; }

}  // namespace fm

#pragma once
// An allocator that keeps freed blocks in per-size-class lists and hands them
// out again, so a training step that repeats the same shapes stops calling
// the system (malloc, cudaMalloc) after its first iteration. Backends supply
// the system calls.
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fm/allocator.h"

namespace fm {

class CachingAllocator : public Allocator {
 public:
  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  AllocatorStats stats() const override;
  void reset_peak() override;
  void empty_cache() override;

  // Size classes: multiples of 64 B up to 4 KiB, then 8 steps per power of
  // two (at most 12.5% slack).
  static size_t size_class(size_t nbytes);

 protected:
  virtual void* system_allocate(size_t nbytes) = 0;  // throws fm::Error when out of memory
  virtual void system_free(void* ptr) = 0;

 private:
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

}  // namespace fm

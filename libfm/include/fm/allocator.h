#pragma once
#include <functional>
// Allocators hand out raw device memory to tensor storages. The CPU one caches
// freed blocks by size, so a steady training step takes nothing new from the
// system (see stats().system_allocs).
#include <cstddef>
#include <cstdint>

#include "fm/device.h"

namespace fm {

struct AllocatorStats {
  size_t allocated = 0;       // bytes held by live tensors
  size_t reserved = 0;        // bytes held from the system (live + cached)
  size_t peak_allocated = 0;  // high-water mark of `allocated`
  uint64_t system_allocs = 0; // calls that reached the system allocator
  uint64_t allocs = 0;        // all allocate() calls
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void empty_cache() = 0;  // return cached blocks to the system
};

// The allocator of a device (type and index); backends install theirs at
// load time. set_allocator: one allocator for every index of a type;
// set_allocator_factory: one per index, made on first use (each keeps its
// own cache, and allocates on its own device whatever device is current).
Allocator* allocator_for(Device d);
void set_allocator(DeviceType t, Allocator* a);
void set_allocator_factory(DeviceType t, std::function<Allocator*(int index)> make);
constexpr int kMaxDeviceIndex = 64;

Allocator* cpu_allocator();

}  // namespace fm

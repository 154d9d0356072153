#include <cstdlib>

#include "fm/caching_allocator.h"
#include "fm/error.h"

namespace fm {
namespace {

class CpuAllocator final : public CachingAllocator {
 protected:
  void* system_allocate(size_t nbytes) override {
    void* p = std::aligned_alloc(64, nbytes);  // nbytes is a size class: a multiple of 64
    if (!p) error("cpu allocator: out of memory allocating ", nbytes, " bytes");
    return p;
  }
  void system_free(void* p) override { std::free(p); }
};

Allocator* g_allocators[kNumDeviceTypes] = {};

}  // namespace

Allocator* cpu_allocator() {
  // Never destroyed: tensors in static objects may outlive any exit order.
  static auto* a = new CpuAllocator();
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

#include <atomic>
#include <cstdlib>
#include <mutex>

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
std::function<Allocator*(int)> g_factories[kNumDeviceTypes];
std::atomic<Allocator*> g_per_index[kNumDeviceTypes][kMaxDeviceIndex] = {};
std::mutex g_mu;

}  // namespace

Allocator* cpu_allocator() {
  // Never destroyed: tensors in static objects may outlive any exit order.
  static auto* a = new CpuAllocator();
  return a;
}

Allocator* allocator_for(Device d) {
  if (d.is_cpu()) return cpu_allocator();
  if (g_factories[int(d.type)]) {
    if (d.index < 0 || d.index >= kMaxDeviceIndex) error("no allocator for device ", d.str(), ": index out of range");
    std::atomic<Allocator*>& slot = g_per_index[int(d.type)][d.index];
    if (Allocator* a = slot.load()) return a;
    std::lock_guard<std::mutex> lock(g_mu);
    if (!slot.load()) slot.store(g_factories[int(d.type)](d.index));  // never destroyed, as the CPU's
    return slot.load();
  }
  Allocator* a = g_allocators[int(d.type)];
  if (!a) error("no allocator for device ", d.str(), " (was libfm built with its backend?)");
  return a;
}

void set_allocator(DeviceType t, Allocator* a) { g_allocators[int(t)] = a; }
void set_allocator_factory(DeviceType t, std::function<Allocator*(int)> make) { g_factories[int(t)] = std::move(make); }

}  // namespace fm

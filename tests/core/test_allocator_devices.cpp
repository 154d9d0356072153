// Allocators per device index (fm/allocator.h): a backend that installs a
// factory gets one allocator, with its own cache, for each index, made once;
// tensors on device d draw from d's. A stand-in backend on host memory plays
// the device type here (no GPU needed); the CUDA backend installs its
// cudaMalloc allocator the same way.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "fm/caching_allocator.h"
#include "fm/error.h"
#include "fm/tensor_impl.h"

using namespace fm;

namespace {

class HostStandIn final : public CachingAllocator {
 public:
  explicit HostStandIn(int index) : index(index) {}
  const int index;

 protected:
  void* system_allocate(size_t n) override { return std::aligned_alloc(64, n); }
  void system_free(void* p) override { std::free(p); }
};

}  // namespace

TEST(AllocatorDevices, OneAllocatorPerIndexMadeOnce) {
  std::vector<int> made;
  set_allocator_factory(DeviceType::cuda, [&](int index) -> Allocator* {
    made.push_back(index);
    return new HostStandIn(index);
  });
  Allocator* a0 = allocator_for(Device::cuda(0));
  Allocator* a3 = allocator_for(Device::cuda(3));
  EXPECT_NE(a0, a3);
  EXPECT_EQ(allocator_for(Device::cuda(3)), a3);
  EXPECT_EQ(static_cast<HostStandIn*>(a3)->index, 3);
  EXPECT_EQ(made, (std::vector<int>{0, 3}));
  // Storage on cuda:3 is counted by cuda:3's allocator alone.
  const size_t before0 = a0->stats().allocated, before3 = a3->stats().allocated;
  {
    Storage s(1000, Device::cuda(3));
    EXPECT_EQ(s.allocator, a3);
    EXPECT_GE(a3->stats().allocated, before3 + 1000);
    EXPECT_EQ(a0->stats().allocated, before0);
  }
  EXPECT_EQ(a3->stats().allocated, before3);
  EXPECT_THROW(allocator_for(Device::cuda(kMaxDeviceIndex)), Error);
  EXPECT_EQ(allocator_for(Device::cpu()), cpu_allocator());
}

#include <cuda_runtime.h>

#include "check.h"
#include "fm/caching_allocator.h"
#include "fm/cuda/cuda.h"

namespace fm::cuda {
namespace {

class CudaAllocator final : public CachingAllocator {
 protected:
  void* system_allocate(size_t nbytes) override {
    void* p = nullptr;
    FM_CUDA_CHECK(cudaMalloc(&p, nbytes));
    return p;
  }
  void system_free(void* p) override { cudaFree(p); }
};

// Installed at load time; never destroyed (tensors may outlive static teardown).
const bool g_installed = [] {
  set_allocator(DeviceType::cuda, new CudaAllocator());
  return true;
}();

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

bool is_available() { return device_count() > 0; }

void synchronize() { FM_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace fm::cuda

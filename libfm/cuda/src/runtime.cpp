#include <cuda_runtime.h>
#include <cstdio>
#include <mutex>
#include <vector>

#include "check.h"
#include "fm/caching_allocator.h"
#include "fm/cuda/cuda.h"
#include "fm/profile.h"

namespace fm::cuda {
namespace {

// Makes `device` current for its scope (cudaMalloc allocates on the current device).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&previous_);
    if (previous_ != device) cudaSetDevice(device);
    device_ = device;
  }
  ~DeviceGuard() {
    if (previous_ != device_) cudaSetDevice(previous_);
  }

 private:
  int previous_ = 0, device_ = 0;
};

// One per device index, each with its own cache of that device's blocks.
class CudaAllocator final : public CachingAllocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}

 protected:
  void* system_allocate(size_t nbytes) override {
    DeviceGuard guard(device_);
    void* p = nullptr;
    const cudaError_t st = cudaMalloc(&p, nbytes);
    if (st != cudaSuccess) {
      cudaGetLastError();  // clear the sticky error so the caller may retry after freeing
      error("cuda: out of memory allocating ", nbytes, " bytes on cuda:", device_, " (", cudaGetErrorString(st), ")");
    }
    return p;
  }
  void system_free(void* p) override {
    DeviceGuard guard(device_);
    cudaFree(p);
  }

 private:
  int device_;
};

// Installed at load time; never destroyed (tensors may outlive static teardown).
const bool g_installed = [] {
  set_allocator_factory(DeviceType::cuda, [](int index) -> Allocator* { return new CudaAllocator(index); });
  return true;
}();

thread_local cudaStream_t t_stream = nullptr;

// fm::Profile's device timer: a pair of events around each kernel call on the
// current stream, pooled (a profiled step makes thousands).
struct EventPair {
  Event start, stop;
};
std::vector<EventPair*> g_event_pool;
std::mutex g_event_mu;

const bool g_timer_installed = [] {
  detail::DeviceTimer t;
  t.start = []() -> void* {
    EventPair* e = nullptr;
    {
      std::lock_guard<std::mutex> lock(g_event_mu);
      if (!g_event_pool.empty()) e = g_event_pool.back(), g_event_pool.pop_back();
    }
    if (!e) e = new EventPair;
    e->start.record(t_stream);
    return e;
  };
  t.stop = [](void* h) { static_cast<EventPair*>(h)->stop.record(t_stream); };
  t.elapsed_ms = [](void* h) {
    auto* e = static_cast<EventPair*>(h);
    e->stop.synchronize();
    return double(e->start.elapsed_ms(e->stop));
  };
  t.release = [](void* h) {
    std::lock_guard<std::mutex> lock(g_event_mu);
    g_event_pool.push_back(static_cast<EventPair*>(h));
  };
  detail::set_device_timer(DeviceType::cuda, t);
  return true;
}();

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

bool is_available() { return device_count() > 0; }

void set_device(int index) { FM_CUDA_CHECK(cudaSetDevice(index)); }

int current_device() {
  int d = 0;
  FM_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void synchronize() { FM_CUDA_CHECK(cudaDeviceSynchronize()); }

DeviceInfo device_info(int index) {
  cudaDeviceProp p{};
  FM_CUDA_CHECK(cudaGetDeviceProperties(&p, index));
  DeviceInfo info;
  std::snprintf(info.name, sizeof info.name, "%s", p.name);
  info.major = p.major;
  info.minor = p.minor;
  info.multiprocessors = p.multiProcessorCount;
  info.total_memory = p.totalGlobalMem;
  return info;
}

Stream::Stream() { FM_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
Stream::~Stream() { cudaStreamDestroy(s_); }
void Stream::synchronize() const { FM_CUDA_CHECK(cudaStreamSynchronize(s_)); }

cudaStream_t current_stream() { return t_stream; }

StreamGuard::StreamGuard(const Stream& s) : prev_(t_stream) { t_stream = s.handle(); }
StreamGuard::~StreamGuard() { t_stream = prev_; }

Event::Event(bool timing) {
  FM_CUDA_CHECK(cudaEventCreateWithFlags(&e_, timing ? cudaEventDefault : cudaEventDisableTiming));
}
Event::~Event() { cudaEventDestroy(e_); }
void Event::record(cudaStream_t s) { FM_CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::synchronize() const { FM_CUDA_CHECK(cudaEventSynchronize(e_)); }
void Event::wait(cudaStream_t s) const { FM_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }
float Event::elapsed_ms(const Event& end) const {
  float ms = 0;
  FM_CUDA_CHECK(cudaEventElapsedTime(&ms, e_, end.e_));
  return ms;
}

AllocatorStats memory_stats() { return allocator_for(Device::cuda(current_device()))->stats(); }

void* pinned_alloc(size_t nbytes) {
  void* p = nullptr;
  FM_CUDA_CHECK(cudaMallocHost(&p, nbytes));
  return p;
}
void pinned_free(void* p) { cudaFreeHost(p); }

}  // namespace fm::cuda

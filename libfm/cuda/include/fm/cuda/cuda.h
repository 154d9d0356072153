#pragma once
// The CUDA backend's runtime: device queries, streams and events, memory
// statistics. Linking libfm::cuda registers its kernels and allocator for
// Device::cuda(N) tensors.
//
// Kernels run on the calling thread's current stream (the legacy default
// stream unless a StreamGuard says otherwise). The caching allocator is not
// stream-aware: memory freed while another stream still uses it may be handed
// out again at once, so synchronize side streams before their tensors die.
#include <cstddef>

#include "fm/allocator.h"

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;

namespace fm::cuda {

bool is_available();  // a usable GPU and driver are present
int device_count();
void set_device(int index);
int current_device();
void synchronize();   // waits for all work on the current device

// Name and compute capability of a device, e.g. "NVIDIA H100 80GB HBM3", 9, 0.
struct DeviceInfo {
  char name[256] = {};
  int major = 0, minor = 0, multiprocessors = 0;
  size_t total_memory = 0;
};
DeviceInfo device_info(int index = 0);

class Stream {
 public:
  Stream();  // a new non-blocking stream on the current device
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t handle() const { return s_; }
  void synchronize() const;

 private:
  cudaStream_t s_ = nullptr;
};

// The current thread's stream; kernels and async copies are queued here.
cudaStream_t current_stream();

// Makes `s` the current stream until the guard dies.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& s);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  cudaStream_t prev_;
};

class Event {
 public:
  explicit Event(bool timing = true);
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  void record(cudaStream_t s = current_stream());
  void synchronize() const;
  void wait(cudaStream_t s) const;  // `s` waits for this event
  float elapsed_ms(const Event& end) const;  // from this event to `end`

 private:
  cudaEvent_t e_ = nullptr;
};

// Allocated, reserved and peak bytes of the current device's CUDA caching allocator.
AllocatorStats memory_stats();

// Pinned (page-locked) host memory for loaders: fast, async-capable copies.
void* pinned_alloc(size_t nbytes);
void pinned_free(void* p);

}  // namespace fm::cuda

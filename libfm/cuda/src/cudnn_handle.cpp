// cuDNN handles: created lazily per device, never destroyed (their teardown
// would race the CUDA context's at exit).
#ifdef FM_HAVE_CUDNN
#include "cudnn_handle.h"

#include "check.h"
#include "fm/cuda/cuda.h"
#include "fm/error.h"

namespace fm::cuda {
namespace {

constexpr int kMaxDevices = 64;

struct Slot {
  std::mutex mu;
  cudnnHandle_t handle = nullptr;
};

Slot& slot(int device) {
  static Slot slots[kMaxDevices];
  if (device < 0 || device >= kMaxDevices) error("cuDNN: device index ", device, " out of range");
  return slots[device];
}

}  // namespace

void cudnn_check(cudnnStatus_t st, const char* call, const std::string& what) {
  if (st != CUDNN_STATUS_SUCCESS) error("cuDNN: ", call, " failed (", cudnnGetErrorString(st), ") for ", what);
}

CudnnLease::CudnnLease(int device) {
  Slot& s = slot(device);
  lock_ = std::unique_lock<std::mutex>(s.mu);
  if (!s.handle) {
    // A handle belongs to the device current when it is created.
    int current = 0;
    FM_CUDA_CHECK(cudaGetDevice(&current));
    if (current != device) FM_CUDA_CHECK(cudaSetDevice(device));
    const cudnnStatus_t st = cudnnCreate(&s.handle);
    if (current != device) FM_CUDA_CHECK(cudaSetDevice(current));
    if (st != CUDNN_STATUS_SUCCESS) {
      s.handle = nullptr;
      error("cuDNN: cudnnCreate failed (", cudnnGetErrorString(st), ") on cuda:", device);
    }
  }
  handle_ = s.handle;
  cudnn_check(cudnnSetStream(handle_, current_stream()), "cudnnSetStream", "cuda:" + std::to_string(device));
}

}  // namespace fm::cuda
#endif  // FM_HAVE_CUDNN

#pragma once
// cuDNN plumbing shared by the cuDNN-backed slots: one handle per device and
// cuDNN errors as fm::Error. Compiled only when CMake found cuDNN.
#ifdef FM_HAVE_CUDNN
#include <cudnn.h>

#include <mutex>
#include <string>

namespace fm::cuda {

// The handle of `device`, bound to the calling thread's current stream and
// held (locked) for the lease's life: a handle is one stream at a time, so two
// threads on one device take turns queueing their cuDNN calls.
class CudnnLease {
 public:
  explicit CudnnLease(int device);
  CudnnLease(const CudnnLease&) = delete;
  CudnnLease& operator=(const CudnnLease&) = delete;
  cudnnHandle_t get() const { return handle_; }

 private:
  std::unique_lock<std::mutex> lock_;
  cudnnHandle_t handle_ = nullptr;
};

// Throws fm::Error "cuDNN: <call> failed (<status>) for <what>" unless st is success.
void cudnn_check(cudnnStatus_t st, const char* call, const std::string& what);

}  // namespace fm::cuda
#endif  // FM_HAVE_CUDNN

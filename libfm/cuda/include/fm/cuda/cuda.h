#pragma once
// The CUDA backend's runtime queries. Linking libfm::cuda registers its
// kernels and allocator for Device::cuda(N) tensors.
namespace fm::cuda {

bool is_available();  // a usable GPU and driver are present
int device_count();
void synchronize();   // waits for all work on the current device

}  // namespace fm::cuda

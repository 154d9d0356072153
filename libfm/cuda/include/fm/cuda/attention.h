#pragma once
// Which kernels run scaled_dot_product_attention on CUDA tensors. The fast
// paths serve only the cases they support (see each one's source); libfm's
// SIMT kernels serve every case and take what the chosen path refuses:
//   "auto"   cuDNN's fused flash attention, else libfm's tensor-core (mma)
//            kernels, else SIMT (the default)
//   "cudnn"  cuDNN, else SIMT
//   "mma"    the tensor-core kernels, else SIMT
//   "simt"   SIMT only
// The environment variable FM_CUDA_ATTENTION, read once, sets the default.
#include <string>

namespace fm::cuda {

void set_attention_kernels(const std::string& which);  // fm::Error for any other name
std::string attention_kernels();

// The path ("cudnn", "mma" or "simt") of the latest attention forward or
// backward on any thread; empty before the first.
std::string last_attention_kernel();

// Whether libfm was built with cuDNN and cudnn-frontend, i.e. whether the
// cuDNN path exists at all (the GPU and cuDNN may still refuse a case).
bool has_cudnn_attention();

}  // namespace fm::cuda

#pragma once
#include <cuda_runtime.h>

#include "fm/error.h"

// Turns a CUDA error into an fm::Error naming the call.
#define FM_CUDA_CHECK(call)                                                            \
  do {                                                                                 \
    cudaError_t fm_cuda_status = (call);                                               \
    if (fm_cuda_status != cudaSuccess)                                                 \
      ::fm::error("cuda: ", #call, " failed: ", cudaGetErrorString(fm_cuda_status)); \
  } while (0)

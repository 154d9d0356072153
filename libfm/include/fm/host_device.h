#pragma once
// Functions marked FM_HOST_DEVICE compile for the CPU and, under nvcc, for the
// GPU, so the element-wise math the CPU tests check is the math the GPU runs.
#if defined(__CUDACC__)
#define FM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FM_HOST_DEVICE inline
#endif

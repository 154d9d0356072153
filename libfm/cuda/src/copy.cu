// Copies (strided, with dtype conversion), transfers and fill on the GPU.
#include <type_traits>

#include "fm/kernels/core.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;
using kernels::StridedPlan;

template <class D, class S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) return compute_t<S>(v) != compute_t<S>(0);
  else if constexpr (std::is_same_v<D, bf16> || std::is_same_v<D, f16>) return D(float(compute_t<S>(v)));
  else return static_cast<D>(compute_t<S>(v));
}

template <class D, class S>
__global__ void copy_kernel(StridedPlan<2> p, int64_t n, D* dst, const S* src) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const auto o = offsets_of(p, i);
    dst[o.v[0]] = convert<D>(src[o.v[1]]);
  }
}

template <class D, class S>
struct Convert {
  __device__ D operator()(S v) const { return convert<D>(v); }
};

template <class T>
__global__ void fill_kernel(StridedPlan<1> p, int64_t n, T* dst, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[offsets_of(p, i).v[0]] = value;
}

void copy(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape()) error("copy: shapes ", dst.shape(), " and ", src.shape(), " differ");
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    FM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  StridedPlan<2> plan(dst.shape(), {&dst, &src});
  kernels::dispatch_all(dst.dtype(), "copy", [&](auto dt) {
    using D = typename decltype(dt)::type;
    kernels::dispatch_all(src.dtype(), "copy", [&](auto st) {
      using S = typename decltype(st)::type;
      if constexpr (kFlatType<D> && kFlatType<S>) {
        if (is_flat(plan, {{dst.data_ptr(), sizeof(D)}, {src.data_ptr(), sizeof(S)}})) {
          flat_map<<<blocks_for_packs(dst.numel()), kThreads, 0, stream()>>>(
              dst.numel(), Convert<D, S>{}, static_cast<D*>(dst.data_ptr()), static_cast<const S*>(src.data_ptr()));
          check_launch();
          return;
        }
      }
      copy_kernel<<<blocks_for(dst.numel()), kThreads, 0, stream()>>>(plan, dst.numel(), static_cast<D*>(dst.data_ptr()),
                                                         static_cast<const S*>(src.data_ptr()));
      check_launch();
    });
  });
}

// Host <-> device (both contiguous, same dtype). Synchronous, so host
// buffers may be reused as soon as it returns.
void copy_across(const Tensor& dst, const Tensor& src) {
  if (dst.nbytes() != src.nbytes()) error("copy: ", src.nbytes(), " bytes into ", dst.nbytes());
  const cudaMemcpyKind kind = src.device().is_cpu() ? cudaMemcpyHostToDevice
                              : dst.device().is_cpu() ? cudaMemcpyDeviceToHost
                                                      : cudaMemcpyDeviceToDevice;
  FM_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), kind, stream()));
  FM_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void fill(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  StridedPlan<1> plan(dst.shape(), {&dst});
  kernels::dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T v;
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) v = T(float(value));
    else v = static_cast<T>(value);
    fill_kernel<<<blocks_for(dst.numel()), kThreads, 0, stream()>>>(plan, dst.numel(), static_cast<T*>(dst.data_ptr()), v);
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::copy, DeviceType::cuda, copy);
FM_REGISTER_KERNEL(kernels::copy_across, DeviceType::cuda, copy_across);
FM_REGISTER_KERNEL(kernels::fill, DeviceType::cuda, fill);

}  // namespace
}  // namespace fm::cuda

// The real DFT on the GPU through cuFFT (R2C/C2R in f32, D2Z/Z2D in f64).
// Plans are cached per (device, stream, length, rows, dtype); a plan holds its
// own work area, so one stream's plan is never run by another at the same time.
#include <cufft.h>

#include <map>
#include <mutex>
#include <tuple>

#include "fm/factory.h"
#include "fm/kernels/spectral.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

constexpr size_t kMaxPlans = 64;  // rows vary with batch shapes: bound the cache

const char* cufft_status(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "success";
    case CUFFT_INVALID_PLAN: return "invalid plan";
    case CUFFT_ALLOC_FAILED: return "allocation failed";
    case CUFFT_INVALID_VALUE: return "invalid value";
    case CUFFT_INTERNAL_ERROR: return "internal error";
    case CUFFT_EXEC_FAILED: return "exec failed";
    case CUFFT_SETUP_FAILED: return "setup failed";
    case CUFFT_INVALID_SIZE: return "invalid size";
    default: return "error";
  }
}

void check(cufftResult r, const char* call, int64_t n, int64_t rows) {
  if (r != CUFFT_SUCCESS) error("cuFFT: ", call, " failed (", cufft_status(r), ") for ", rows, " rows of length ", n);
}

using PlanKey = std::tuple<int, cudaStream_t, int64_t, int64_t, DType, bool>;

struct PlanCache {
  std::mutex mu;
  std::map<PlanKey, cufftHandle> plans;
};

PlanCache& cache() {
  static auto* c = new PlanCache();  // never destroyed: plans may outlive static teardown order
  return *c;
}

// Runs f(plan) under the cache's lock (cuFFT calls only enqueue work).
template <class F>
void with_plan(DType dtype, bool inverse, int64_t n, int64_t rows, F&& f) {
  PlanCache& c = cache();
  const cudaStream_t stream = current_stream();
  const PlanKey key{current_device(), stream, n, rows, dtype, inverse};
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.plans.find(key);
  if (it == c.plans.end()) {
    if (c.plans.size() >= kMaxPlans) {
      FM_CUDA_CHECK(cudaDeviceSynchronize());
      for (auto& [k, p] : c.plans) cufftDestroy(p);
      c.plans.clear();
    }
    const bool f64 = dtype == DType::f64;
    const cufftType type = inverse ? (f64 ? CUFFT_Z2D : CUFFT_C2R) : (f64 ? CUFFT_D2Z : CUFFT_R2C);
    int len = int(n);
    const int bins = int(n / 2 + 1);
    cufftHandle plan;
    // Real rows are n apart, complex rows n/2 + 1 pairs apart.
    check(cufftPlanMany(&plan, 1, &len, &len, 1, inverse ? bins : len, &len, 1, inverse ? len : bins, type,
                        int(rows)),
          "cufftPlanMany", n, rows);
    it = c.plans.emplace(key, plan).first;
  }
  check(cufftSetStream(it->second, stream), "cufftSetStream", n, rows);
  f(it->second);
}

template <class T>
__global__ void scale_kernel(T* x, int64_t count, T s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

void rfft_kernel(const Tensor& X, const Tensor& x) {
  const int64_t rows = x.size(0), n = x.size(1);
  if (rows == 0) return;
  with_plan(x.dtype(), false, n, rows, [&](cufftHandle plan) {
    if (x.dtype() == DType::f64)
      check(cufftExecD2Z(plan, x.data<double>(), reinterpret_cast<cufftDoubleComplex*>(X.data<double>())),
            "cufftExecD2Z", n, rows);
    else
      check(cufftExecR2C(plan, x.data<float>(), reinterpret_cast<cufftComplex*>(X.data<float>())), "cufftExecR2C",
            n, rows);
  });
}

void irfft_kernel(const Tensor& x, const Tensor& X) {
  const int64_t rows = x.size(0), n = x.size(1), bins = n / 2 + 1;
  if (rows == 0) return;
  // C2R overwrites its input and expects a Hermitian spectrum: work on a copy
  // whose DC (and even-length Nyquist) imaginary parts are zero.
  Tensor spec = X.clone();
  const size_t elem = X.dtype() == DType::f64 ? sizeof(double) : sizeof(float);
  char* base = static_cast<char*>(spec.data_ptr());
  const cudaStream_t stream = current_stream();
  FM_CUDA_CHECK(cudaMemset2DAsync(base + elem, size_t(bins) * 2 * elem, 0, elem, size_t(rows), stream));
  if (n % 2 == 0)
    FM_CUDA_CHECK(
        cudaMemset2DAsync(base + (2 * (n / 2) + 1) * elem, size_t(bins) * 2 * elem, 0, elem, size_t(rows), stream));
  with_plan(x.dtype(), true, n, rows, [&](cufftHandle plan) {
    if (x.dtype() == DType::f64)
      check(cufftExecZ2D(plan, reinterpret_cast<cufftDoubleComplex*>(spec.data<double>()), x.data<double>()),
            "cufftExecZ2D", n, rows);
    else
      check(cufftExecC2R(plan, reinterpret_cast<cufftComplex*>(spec.data<float>()), x.data<float>()),
            "cufftExecC2R", n, rows);
  });
  const int64_t count = rows * n;
  if (x.dtype() == DType::f64)
    scale_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x.data<double>(), count, 1.0 / double(n));
  else
    scale_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x.data<float>(), count, float(1.0 / double(n)));
  FM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

FM_REGISTER_KERNEL(kernels::rfft, DeviceType::cuda, rfft_kernel);
FM_REGISTER_KERNEL(kernels::irfft, DeviceType::cuda, irfft_kernel);

}  // namespace fm::cuda

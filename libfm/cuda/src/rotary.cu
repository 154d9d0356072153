// Rotary embedding on the GPU: as on the CPU, a cos/sin table per
// (position, pair) computed in f64 and rounded to the compute type once, then
// one thread per rotated pair.
#include <cmath>

#include "fm/kernels/attention.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;

// table[t * half + i] = (cos, sin) of pair i at position start_pos + t.
template <class C>
__global__ void rotary_table_kernel(C* cos_t, C* sin_t, int64_t seq, int64_t half, int64_t D, int64_t start_pos,
                                    double theta, bool inverse) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < seq * half;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = k / half, i = k % half;
    const double angle = double(start_pos + t) * pow(theta, -2.0 * double(i) / double(D));
    double s, c;
    sincos(angle, &s, &c);
    cos_t[k] = C(c);
    sin_t[k] = C(inverse ? -s : s);
  }
}

template <class T, class C>
__global__ void rotary_kernel(T* out, const T* x, int64_t rows, int64_t seq, int64_t half, const C* cos_t,
                              const C* sin_t) {
  const int64_t D = 2 * half;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < rows * half;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = k / half, i = k % half;
    const int64_t tab = (r % seq) * half + i;
    const C c = cos_t[tab], s = sin_t[tab];
    const T* a = x + r * D;
    T* o = out + r * D;
    const C x1 = C(a[i]), x2 = C(a[i + half]);
    o[i] = T(x1 * c - x2 * s);
    o[i + half] = T(x2 * c + x1 * s);
  }
}

void rotary(const Tensor& out, const Tensor& x, int64_t start_pos, double theta, bool inverse) {
  kernels::dispatch_float(x.dtype(), "rotary_embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const int64_t D = x.size(-1), seq = x.size(-2), half = D / 2;
    if (x.numel() == 0 || half == 0) return;
    const int64_t rows = x.numel() / D;
    const Tensor table = make_tensor({2, seq * half}, dtype_of<C>::value, x.device());
    C* cos_t = static_cast<C*>(table.data_ptr());
    C* sin_t = cos_t + seq * half;
    rotary_table_kernel<<<blocks_for(seq * half), kThreads, 0, stream()>>>(cos_t, sin_t, seq, half, D, start_pos,
                                                                            theta, inverse);
    check_launch();
    rotary_kernel<<<blocks_for(rows * half), kThreads, 0, stream()>>>(
        static_cast<T*>(out.data_ptr()), static_cast<const T*>(x.data_ptr()), rows, seq, half, cos_t, sin_t);
    check_launch();
  });
}

FM_REGISTER_KERNEL(kernels::rotary, DeviceType::cuda, rotary);

}  // namespace
}  // namespace fm::cuda

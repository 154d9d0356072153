// Rotary embedding on the CPU: a cos/sin table per (position, pair) computed
// once in f64, then one pass over the rows.
#include <cmath>
#include <vector>

#include "dispatch.h"
#include "fm/kernels/attention.h"

namespace fm::cpu {
namespace {

template <class T>
void rotate(const T* x, T* out, int64_t rows, int64_t seq, int64_t D, int64_t start_pos, double theta,
            bool inverse) {
  using C = compute_t<T>;
  const int64_t half = D / 2;
  std::vector<C> cos_t(size_t(seq * half)), sin_t(size_t(seq * half));
#pragma omp parallel for schedule(static) if (seq * half > kParallelGrain / 8)
  for (int64_t t = 0; t < seq; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(start_pos + t) * std::pow(theta, -2.0 * double(i) / double(D));
      cos_t[size_t(t * half + i)] = C(std::cos(angle));
      sin_t[size_t(t * half + i)] = C(inverse ? -std::sin(angle) : std::sin(angle));
    }
#pragma omp parallel for schedule(static) if (rows * D > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const C* c = cos_t.data() + (r % seq) * half;
    const C* s = sin_t.data() + (r % seq) * half;
    const T* a = x + r * D;
    T* o = out + r * D;
    for (int64_t i = 0; i < half; ++i) {
      const C x1 = C(a[i]), x2 = C(a[i + half]);
      o[i] = T(x1 * c[i] - x2 * s[i]);
      o[i + half] = T(x2 * c[i] + x1 * s[i]);
    }
  }
}

void rotary_kernel(const Tensor& out, const Tensor& x, int64_t start_pos, double theta, bool inverse) {
  dispatch_float(x.dtype(), "rotary_embedding", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t D = x.size(-1), seq = x.size(-2);
    if (x.numel() == 0) return;
    rotate<T>(x.data<T>(), out.data<T>(), x.numel() / D, seq, D, start_pos, theta, inverse);
  });
}

FM_REGISTER_KERNEL(kernels::rotary, DeviceType::cpu, rotary_kernel);

}  // namespace
}  // namespace fm::cpu

// Strided copies with dtype conversion, and fill.
#include <cstring>

#include "dispatch.h"
#include "fm/kernels/core.h"

namespace fm::cpu {
namespace {

template <class D, class S>
D convert(S v) {
  if constexpr (std::is_same_v<D, bool>) return compute_t<S>(v) != compute_t<S>(0);
  else if constexpr (std::is_same_v<D, bf16> || std::is_same_v<D, f16>) return D(float(compute_t<S>(v)));
  else return static_cast<D>(compute_t<S>(v));
}

void copy_kernel(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape()) error("copy: shapes ", dst.shape(), " and ", src.shape(), " differ");
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    std::memmove(dst.data_ptr(), src.data_ptr(), dst.nbytes());
    return;
  }
  StridedPlan<2> plan(dst.shape(), {&dst, &src});
  dispatch_all(dst.dtype(), "copy", [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype(), "copy", [&](auto st) {
      using S = typename decltype(st)::type;
      D* d = static_cast<D*>(dst.data_ptr());
      const S* s = static_cast<const S*>(src.data_ptr());
      for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* str) {
        D* o = d + off[0];
        const S* i = s + off[1];
        if (str[0] == 1 && str[1] == 1) {
          for (int64_t j = 0; j < n; ++j) o[j] = convert<D>(i[j]);
        } else {
          for (int64_t j = 0; j < n; ++j) o[j * str[0]] = convert<D>(i[j * str[1]]);
        }
      });
    });
  });
}

void copy_across_kernel(const Tensor& dst, const Tensor& src) {
  if (!dst.device().is_cpu() || !src.device().is_cpu()) error("copy: the cpu backend copies only cpu tensors");
  copy_kernel(dst, src);
}

void fill_kernel(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  StridedPlan<1> plan(dst.shape(), {&dst});
  dispatch_all(dst.dtype(), "fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = convert<T>(value);
    T* d = static_cast<T*>(dst.data_ptr());
    for_each_run(plan, [&](const int64_t* off, int64_t n, const int64_t* str) {
      for (int64_t j = 0; j < n; ++j) d[off[0] + j * str[0]] = v;
    });
  });
}

FM_REGISTER_KERNEL(kernels::copy, DeviceType::cpu, copy_kernel);
FM_REGISTER_KERNEL(kernels::copy_across, DeviceType::cpu, copy_across_kernel);
FM_REGISTER_KERNEL(kernels::fill, DeviceType::cpu, fill_kernel);

}  // namespace
}  // namespace fm::cpu

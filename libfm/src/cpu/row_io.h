#pragma once
// Rows (or chunks of rows) of a stored dtype seen in their compute type, as
// Eigen arrays, for the CPU softmax, norm and cross-entropy kernels.
#include <Eigen/Core>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dispatch.h"

namespace fm::cpu {

template <class C>
using ConstArr = Eigen::Map<const Eigen::Array<C, Eigen::Dynamic, 1>>;
template <class C>
using Arr = Eigen::Map<Eigen::Array<C, Eigen::Dynamic, 1>>;

// n values of stored type S seen in their compute type: f32/f64 values are
// used in place, bf16/f16 values go through a converted copy (a buffer that
// grows to the largest n; one RowIO per thread).
template <class S>
class RowIO {
  using C = compute_t<S>;
  static constexpr bool kNative = std::is_same_v<S, C>;

 public:
  const C* read(const S* p, int64_t n) {
    if constexpr (kNative) return p;
    C* buf = buffer(n);
    for (int64_t i = 0; i < n; ++i) buf[i] = C(p[i]);
    return buf;
  }
  // Where to compute n outputs for p; commit() stores them.
  C* out(S* p, int64_t n) {
    if constexpr (kNative) return p;
    return buffer(n);
  }
  void commit(S* p, int64_t n) {
    if constexpr (!kNative)
      for (int64_t i = 0; i < n; ++i) p[i] = S(buf_[size_t(i)]);
  }

 private:
  C* buffer(int64_t n) {
    if (buf_.size() < size_t(n)) buf_.resize(size_t(n));
    return buf_.data();
  }

  std::vector<C> buf_;
};

}  // namespace fm::cpu

// Fused cross-entropy on the CPU. Each row of logits is read in chunks that
// stay in cache between a max pass and an exp pass: the forward keeps an
// online (max, sum of exp) pair, so a row is read from memory once; the
// backward recomputes softmax from the saved logsumexp and writes the
// gradient.
// GCC 12 reports Eigen's AVX-512 exp as (maybe-)uninitialized (its
// _mm512_undefined_* operands): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "fm/kernels/norm.h"
#include "row_io.h"

namespace fm::cpu {
namespace {

// Long enough that the hardware prefetcher keeps streaming (chunks of 2048
// floats ran at half the speed, measured at V = 50304), short enough for L2.
constexpr int64_t kChunk = 16384;

template <class S, class T>
void forward_typed(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                   int64_t ignore_index, double smoothing) {
  using C = compute_t<S>;
  const int64_t rows = logits.size(0), n = logits.size(1);
  const S* px = static_cast<const S*>(logits.data_ptr());
  const T* pt = static_cast<const T*>(target.data_ptr());
  C* ploss = static_cast<C*>(loss.data_ptr());
  C* plse = static_cast<C*>(lse.data_ptr());
  const C eps = C(smoothing);
  int64_t bad_row = rows, bad_value = 0;  // the first out-of-range target

#pragma omp parallel if (rows > 1 && rows * n > kParallelGrain)
  {
    RowIO<S> io;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = int64_t(pt[r]);
      ploss[r] = plse[r] = 0;
      if (t == ignore_index) continue;
      if (t < 0 || t >= n) {
#pragma omp critical(fm_cross_entropy_bad_target)
        if (r < bad_row) bad_row = r, bad_value = t;
        continue;
      }
      const S* row = px + r * n;
      C m = -std::numeric_limits<C>::infinity(), s = 0, sum_x = 0;
      for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t len = std::min(kChunk, n - c0);
        ConstArr<C> x(io.read(row + c0, len), len);
        const C cm = x.maxCoeff();
        if (cm > m) {  // rescale the running sum to the new maximum
          s *= std::exp(m - cm);
          m = cm;
        }
        s += (x - m).exp().sum();
        if (eps != C(0)) sum_x += x.sum();
      }
      const C l = m + std::log(s);
      plse[r] = l;
      ploss[r] = l - (C(1) - eps) * C(row[t]) - eps * sum_x / C(n);
    }
  }
  if (bad_row < rows)
    error("cross_entropy: target ", bad_value, " at position ", bad_row, " is out of range [0, ", n,
          ") and not ignore_index (", ignore_index, ")");
}

template <class S, class T>
void backward_typed(const Tensor& dlogits, const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                    const Tensor& lse, int64_t ignore_index, double smoothing) {
  using C = compute_t<S>;
  const int64_t rows = logits.size(0), n = logits.size(1);
  const S* px = static_cast<const S*>(logits.data_ptr());
  const T* pt = static_cast<const T*>(target.data_ptr());
  const C* pg = static_cast<const C*>(grad_loss.data_ptr());
  const C* plse = static_cast<const C*>(lse.data_ptr());
  S* pd = static_cast<S*>(dlogits.data_ptr());
  const C eps = C(smoothing), uniform = eps / C(n);

#pragma omp parallel if (rows > 1 && rows * n > kParallelGrain)
  {
    RowIO<S> in, out;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = int64_t(pt[r]);
      S* drow = pd + r * n;
      if (t == ignore_index || t < 0 || t >= n) {
        std::fill(drow, drow + n, S(0.0f));
        continue;
      }
      const S* row = px + r * n;
      const C g = pg[r], l = plse[r];
      for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t len = std::min(kChunk, n - c0);
        ConstArr<C> x(in.read(row + c0, len), len);
        Arr<C> d(out.out(drow + c0, len), len);
        d = ((x - l).exp() - uniform) * g;
        if (t >= c0 && t < c0 + len) d[t - c0] -= (C(1) - eps) * g;
        out.commit(drow + c0, len);
      }
    }
  }
}

template <class F>
void dispatch_target(DType t, F&& f) {
  if (t == DType::i64) return f(Tag<int64_t>{});
  if (t == DType::i32) return f(Tag<int32_t>{});
  error("cross_entropy: target must be int32 or int64, got ", t);
}

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                           int64_t ignore_index, double smoothing) {
  kernels::check_cross_entropy_inputs(logits, target);
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto s) {
    dispatch_target(target.dtype(), [&](auto t) {
      forward_typed<typename decltype(s)::type, typename decltype(t)::type>(loss, lse, logits, target, ignore_index,
                                                                             smoothing);
    });
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad_loss, const Tensor& logits,
                            const Tensor& target, const Tensor& lse, int64_t ignore_index, double smoothing) {
  kernels::check_cross_entropy_inputs(logits, target);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto s) {
    dispatch_target(target.dtype(), [&](auto t) {
      backward_typed<typename decltype(s)::type, typename decltype(t)::type>(dlogits, grad_loss, logits, target, lse,
                                                                              ignore_index, smoothing);
    });
  });
}

FM_REGISTER_KERNEL(kernels::cross_entropy_forward, DeviceType::cpu, cross_entropy_forward);
FM_REGISTER_KERNEL(kernels::cross_entropy_backward, DeviceType::cpu, cross_entropy_backward);

}  // namespace
}  // namespace fm::cpu

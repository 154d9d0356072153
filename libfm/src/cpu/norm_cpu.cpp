// Softmax, layer_norm and rms_norm on the CPU: one row per iteration of an
// OpenMP loop over rows, vectorised inner loops, statistics in the compute
// type (f32 for f32/bf16/f16, f64 for f64). exp() comes from Eigen's
// vectorised array functions.
// GCC 12 reports Eigen's AVX-512 exp as (maybe-)uninitialized (its
// _mm512_undefined_* operands): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <vector>

#include "fm/kernels/norm.h"
#include "row_io.h"

namespace fm::cpu {
namespace {

void check_rows(const char* op, const Tensor& t) {
  if (!t.is_contiguous() || t.dim() != 2) error(op, ": expects a contiguous [rows, n] tensor, got ", t.shape());
}

template <class C>
C row_max(const C* x, int64_t n) {
  C m = -std::numeric_limits<C>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// ---- softmax

template <class S>
void softmax_forward_typed(const Tensor& y, const Tensor& x, bool log) {
  using C = compute_t<S>;
  const int64_t rows = x.size(0), n = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  S* py = static_cast<S*>(y.data_ptr());
#pragma omp parallel if (rows > 1 && rows * n > kParallelGrain)
  {
    RowIO<S> in, out;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      ConstArr<C> xr(in.read(px + r * n, n), n);
      Arr<C> yr(out.out(py + r * n, n), n);
      const C m = row_max(xr.data(), n);
      if (log) {
        yr = xr - (m + std::log((xr - m).exp().sum()));
      } else {
        yr = (xr - m).exp();
        yr *= C(1) / yr.sum();
      }
      out.commit(py + r * n, n);
    }
  }
}

template <class S>
void softmax_backward_typed(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  using C = compute_t<S>;
  const int64_t rows = y.size(0), n = y.size(1);
  const S* pdy = static_cast<const S*>(dy.data_ptr());
  const S* py = static_cast<const S*>(y.data_ptr());
  S* pdx = static_cast<S*>(dx.data_ptr());
#pragma omp parallel if (rows > 1 && rows * n > kParallelGrain)
  {
    RowIO<S> gin, yin, out;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      ConstArr<C> g(gin.read(pdy + r * n, n), n);
      ConstArr<C> yr(yin.read(py + r * n, n), n);
      Arr<C> d(out.out(pdx + r * n, n), n);
      if (log) d = g - yr.exp() * g.sum();
      else d = yr * (g - (g * yr).sum());
      out.commit(pdx + r * n, n);
    }
  }
}

void softmax_forward(const Tensor& y, const Tensor& x, bool log) {
  check_rows("softmax", x);
  dispatch_float(x.dtype(), "softmax",
                 [&](auto tag) { softmax_forward_typed<typename decltype(tag)::type>(y, x, log); });
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log) {
  check_rows("softmax_backward", y);
  dispatch_float(y.dtype(), "softmax_backward",
                 [&](auto tag) { softmax_backward_typed<typename decltype(tag)::type>(dx, dy, y, log); });
}

FM_REGISTER_KERNEL(kernels::softmax_forward, DeviceType::cpu, softmax_forward);
FM_REGISTER_KERNEL(kernels::softmax_backward, DeviceType::cpu, softmax_backward);

// ---- layer_norm and rms_norm (kRms: no mean subtraction, no bias)

template <class T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr;
}
template <class T>
T* mut_ptr_or_null(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

template <class S, bool kRms>
void norm_forward_typed(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                        const Tensor& bias, double eps) {
  using C = compute_t<S>;
  const int64_t rows = x.size(0), n = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  const S* pw = ptr_or_null<S>(weight);
  const S* pb = ptr_or_null<S>(bias);
  S* py = static_cast<S*>(y.data_ptr());
  C* pmean = mut_ptr_or_null<C>(mean);
  C* prstd = static_cast<C*>(rstd.data_ptr());
#pragma omp parallel for schedule(static) if (rows > 1 && rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const S* xr = px + r * n;
    S* yr = py + r * n;
    C mu = 0;
    if constexpr (!kRms) {
      C s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; ++i) s += C(xr[i]);
      mu = s / C(n);
    }
    // Second pass over the (cached) row: no cancellation in the variance.
    C ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; ++i) {
      const C d = C(xr[i]) - mu;
      ss += d * d;
    }
    const C rs = C(1) / std::sqrt(ss / C(n) + C(eps));
    if (pmean) pmean[r] = mu;
    prstd[r] = rs;
    if (pw && pb) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = S((C(xr[i]) - mu) * rs * C(pw[i]) + C(pb[i]));
    } else if (pw) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = S((C(xr[i]) - mu) * rs * C(pw[i]));
    } else if (pb) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = S((C(xr[i]) - mu) * rs + C(pb[i]));
    } else {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = S((C(xr[i]) - mu) * rs);
    }
  }
}

// dx of one row: rs * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight,
// xhat = (x - mu) * rs (rms_norm: mu = 0 and no mean(g) term).
template <bool kHasWeight, bool kRms, class S, class C>
void norm_dx_row(S* dx, const S* dy, const S* x, const S* w, C mu, C rs, int64_t n) {
  auto g = [&](int64_t i) { return kHasWeight ? C(dy[i]) * C(w[i]) : C(dy[i]); };
  C sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
  for (int64_t i = 0; i < n; ++i) {
    sum_g += g(i);
    sum_gx += g(i) * (C(x[i]) - mu) * rs;
  }
  const C mean_g = kRms ? C(0) : sum_g / C(n), mean_gx = sum_gx / C(n);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dx[i] = S(rs * (g(i) - mean_g - (C(x[i]) - mu) * rs * mean_gx));
}

// dweight/dbias are summed per block of rows, then the block partials are
// added in block order: the result does not depend on the thread count.
constexpr int64_t kMaxRowBlocks = 64;

template <class S, bool kRms>
void norm_backward_typed(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight) {
  using C = compute_t<S>;
  const int64_t rows = x.size(0), n = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  const S* pdy = static_cast<const S*>(dy.data_ptr());
  const S* pw = ptr_or_null<S>(weight);
  const C* pmean = ptr_or_null<C>(mean);
  const C* prstd = static_cast<const C*>(rstd.data_ptr());
  S* pdx = mut_ptr_or_null<S>(dx);

  const int64_t block_rows = std::max<int64_t>(1, (rows + kMaxRowBlocks - 1) / kMaxRowBlocks);
  const int64_t nblocks = (rows + block_rows - 1) / block_rows;
  const bool want_dw = dweight.defined(), want_db = dbias.defined();
  std::vector<C> part_dw(want_dw ? size_t(nblocks * n) : 0), part_db(want_db ? size_t(nblocks * n) : 0);

#pragma omp parallel for schedule(static) if (nblocks > 1 && rows * n > kParallelGrain)
  for (int64_t b = 0; b < nblocks; ++b) {
    C* bdw = want_dw ? part_dw.data() + b * n : nullptr;
    C* bdb = want_db ? part_db.data() + b * n : nullptr;
    for (int64_t r = b * block_rows; r < std::min(rows, (b + 1) * block_rows); ++r) {
      const S* xr = px + r * n;
      const S* gr = pdy + r * n;
      const C mu = kRms ? C(0) : pmean[r], rs = prstd[r];
      if (pdx) {
        if (pw) norm_dx_row<true, kRms>(pdx + r * n, gr, xr, pw, mu, rs, n);
        else norm_dx_row<false, kRms>(pdx + r * n, gr, xr, pw, mu, rs, n);
      }
      if (bdw) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) bdw[i] += C(gr[i]) * (C(xr[i]) - mu) * rs;
      }
      if (bdb) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) bdb[i] += C(gr[i]);
      }
    }
  }

  auto sum_blocks = [&](const std::vector<C>& part, const Tensor& out) {
    S* po = static_cast<S*>(out.data_ptr());
#pragma omp parallel for schedule(static) if (nblocks * n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      C s = 0;
      for (int64_t b = 0; b < nblocks; ++b) s += part[size_t(b * n + i)];
      po[i] = S(s);
    }
  };
  if (want_dw) sum_blocks(part_dw, dweight);
  if (want_db) sum_blocks(part_db, dbias);
}

void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                        const Tensor& bias, double eps) {
  check_rows("layer_norm", x);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    norm_forward_typed<typename decltype(tag)::type, false>(y, mean, rstd, x, weight, bias, eps);
  });
}

void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight) {
  check_rows("layer_norm_backward", x);
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    norm_backward_typed<typename decltype(tag)::type, false>(dx, dweight, dbias, dy, x, mean, rstd, weight);
  });
}

void rms_norm_forward(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight, double eps) {
  check_rows("rms_norm", x);
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    norm_forward_typed<typename decltype(tag)::type, true>(y, Tensor(), rstd, x, weight, Tensor(), eps);
  });
}

void rms_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                       const Tensor& weight) {
  check_rows("rms_norm_backward", x);
  dispatch_float(x.dtype(), "rms_norm_backward", [&](auto tag) {
    norm_backward_typed<typename decltype(tag)::type, true>(dx, dweight, Tensor(), dy, x, Tensor(), rstd, weight);
  });
}

FM_REGISTER_KERNEL(kernels::layer_norm_forward, DeviceType::cpu, layer_norm_forward);
FM_REGISTER_KERNEL(kernels::layer_norm_backward, DeviceType::cpu, layer_norm_backward);
FM_REGISTER_KERNEL(kernels::rms_norm_forward, DeviceType::cpu, rms_norm_forward);
FM_REGISTER_KERNEL(kernels::rms_norm_backward, DeviceType::cpu, rms_norm_backward);

}  // namespace
}  // namespace fm::cpu

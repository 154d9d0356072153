// Row reductions over a contiguous [rows, n] input. Sums are taken over fixed
// 4096-element blocks and the block sums added in order, so results do not
// depend on the thread count.
#include <cmath>
#include <vector>

#include "dispatch.h"
#include "fm/kernels/core.h"

namespace fm::cpu {
namespace {

using kernels::ReduceOp;
constexpr int64_t kBlock = 4096;

template <class S, class Acc, class F>
Acc block_sum(const S* x, int64_t n, F transform) {
  Acc acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += transform(x[i + l]);
  for (; i < n; ++i) acc[0] += transform(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sum of transform(x[i]) over a row; parallel across blocks when the row is long.
template <class S, class Acc, class F>
Acc row_sum(const S* x, int64_t n, F transform, bool parallel) {
  const int64_t nb = (n + kBlock - 1) / kBlock;
  if (nb <= 1) return block_sum<S, Acc>(x, n, transform);
  std::vector<Acc> partial(static_cast<size_t>(nb));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < nb; ++b)
    partial[size_t(b)] = block_sum<S, Acc>(x + b * kBlock, std::min(kBlock, n - b * kBlock), transform);
  Acc total = 0;
  for (Acc p : partial) total += p;
  return total;
}

template <class S>
void reduce_typed(ReduceOp op, const Tensor& out, const Tensor& x, int64_t correction) {
  using C = compute_t<S>;
  constexpr bool is_float = std::is_floating_point_v<C>;
  using Acc = std::conditional_t<is_float, double, int64_t>;
  const int64_t rows = x.size(0), n = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  const bool parallel_rows = rows > 1;
  const bool parallel_within = !parallel_rows && n > kParallelGrain;

  auto write = [&](int64_t r, auto value) {
    dispatch_all(out.dtype(), "reduce", [&](auto tag) {
      using O = typename decltype(tag)::type;
      if constexpr (std::is_same_v<O, bf16> || std::is_same_v<O, f16>) static_cast<O*>(out.data_ptr())[r] = O(float(value));
      else static_cast<O*>(out.data_ptr())[r] = O(value);
    });
  };

#pragma omp parallel for schedule(static) if (parallel_rows && rows * n > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const S* row = px + r * n;
    switch (op) {
      case ReduceOp::sum:
        write(r, row_sum<S, Acc>(row, n, [](S v) { return Acc(C(v)); }, parallel_within));
        break;
      case ReduceOp::mean:
      case ReduceOp::var: {
        const double mean = double(row_sum<S, Acc>(row, n, [](S v) { return Acc(C(v)); }, parallel_within)) / double(n);
        if (op == ReduceOp::mean) {
          write(r, mean);
          break;
        }
        const double ss = double(row_sum<S, Acc>(row, n, [mean](S v) {
          const double d = double(C(v)) - mean;
          return Acc(d * d);
        }, parallel_within));
        const int64_t denom = n - correction;
        write(r, denom > 0 ? ss / double(denom) : NAN);
        break;
      }
      case ReduceOp::max:
      case ReduceOp::min:
      case ReduceOp::argmax:
      case ReduceOp::argmin: {
        const bool want_max = op == ReduceOp::max || op == ReduceOp::argmax;
        C best = C(row[0]);
        int64_t best_i = 0;
        for (int64_t i = 1; i < n; ++i) {
          const C v = C(row[i]);
          if constexpr (is_float) {
            if (std::isnan(best)) break;  // NaN wins, as in PyTorch
            if (std::isnan(v)) {
              best = v;
              best_i = i;
              break;
            }
          }
          if (want_max ? v > best : v < best) {
            best = v;
            best_i = i;
          }
        }
        if (op == ReduceOp::argmax || op == ReduceOp::argmin) static_cast<int64_t*>(out.data_ptr())[r] = best_i;
        else write(r, best);
        break;
      }
    }
  }
}

void reduce_kernel(ReduceOp op, const Tensor& out, const Tensor& x, int64_t correction) {
  if (!x.is_contiguous() || x.dim() != 2) error("reduce: expects a contiguous [rows, n] input, got ", x.shape());
  if (x.size(0) == 0) return;
  if (x.size(1) == 0) {  // empty rows: sum 0, mean/var NaN
    kernels::fill(out.device(), out, op == ReduceOp::sum ? 0.0 : NAN);
    return;
  }
  dispatch_all(x.dtype(), "reduce", [&](auto tag) { reduce_typed<typename decltype(tag)::type>(op, out, x, correction); });
}

// Column sums: each thread owns a block of columns and adds rows in order,
// so the result does not depend on the thread count.
template <class S>
void reduce_leading_typed(const Tensor& out, const Tensor& x, bool mean) {
  using C = compute_t<S>;
  using Acc = std::conditional_t<std::is_floating_point_v<C>, double, int64_t>;
  const int64_t n = x.size(0), cols = x.size(1);
  const S* px = static_cast<const S*>(x.data_ptr());
  constexpr int64_t kCols = 256;
  const int64_t nblocks = (cols + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (n * cols > kParallelGrain)
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t c0 = b * kCols, c1 = std::min(cols, c0 + kCols);
    Acc acc[kCols] = {};
    for (int64_t i = 0; i < n; ++i) {
      const S* row = px + i * cols;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += Acc(C(row[c]));
    }
    dispatch_all(out.dtype(), "reduce", [&](auto tag) {
      using O = typename decltype(tag)::type;
      O* po = static_cast<O*>(out.data_ptr());
      for (int64_t c = c0; c < c1; ++c) {
        const auto v = mean ? double(acc[c - c0]) / double(n) : acc[c - c0];
        if constexpr (std::is_same_v<O, bf16> || std::is_same_v<O, f16>) po[c] = O(float(v));
        else po[c] = O(v);
      }
    });
  }
}

void reduce_leading_kernel(const Tensor& out, const Tensor& x, bool mean) {
  if (!x.is_contiguous() || x.dim() != 2) error("reduce_leading: expects a contiguous [n, cols] input, got ", x.shape());
  dispatch_all(x.dtype(), "reduce", [&](auto tag) { reduce_leading_typed<typename decltype(tag)::type>(out, x, mean); });
}

FM_REGISTER_KERNEL(kernels::reduce, DeviceType::cpu, reduce_kernel);
FM_REGISTER_KERNEL(kernels::reduce_leading, DeviceType::cpu, reduce_leading_kernel);

}  // namespace
}  // namespace fm::cpu

// Flash attention on the CPU. The forward walks key blocks with an online
// softmax (running max and sum per query row) and keeps only the per-row
// log-sum-exp; the backward recomputes each probability tile from q, k and
// that log-sum-exp. No buffer ever holds more than a 64 x 64 score tile per
// thread. Tile products go through Eigen's GEMM (single-threaded inside our
// OpenMP regions); softmax rows use Eigen's vectorised exp. Every [B,H,T,D]
// operand is read through its strides (rows need unit stride only), so
// head-split views of a fused qkv projection go in and out uncopied.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <utility>
#include <limits>
#include <vector>

#include "dispatch.h"
#include "fm/kernels/attention.h"
#include "fm/kernels/core.h"
#include "fm/tensor_impl.h"

namespace fm::cpu {
namespace {

constexpr int64_t kBlockQ = 64;  // query rows per tile
constexpr int64_t kBlockK = 64;  // keys per tile

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Mat = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstMat = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Tile buffers aligned for full SIMD packets: Eigen's row loops then run no
// scalar head (measured: scalar expf was 8% of the time with malloc's alignment).
template <class T>
using Buffer = std::vector<T, Eigen::aligned_allocator<T>>;

template <class T>
constexpr T kInf = std::numeric_limits<T>::infinity();

// A [B,H,T,D] operand with unit stride along D: head bh starts at
// head(bh), its rows are ld apart.
template <class T>
struct Heads {
  T* data = nullptr;
  int64_t H = 1, sb = 0, sh = 0, ld = 0;

  explicit Heads(const Tensor& t)
      : data(static_cast<T*>(t.data_ptr())), H(t.size(1)), sb(t.stride(0)), sh(t.stride(1)), ld(t.stride(2)) {
    if (t.size(3) > 1 && t.stride(3) != 1) error("attention kernel: rows of ", t.shape(), " need unit stride");
  }
  T* head(int64_t bh) const { return data + (bh / H) * sb + (bh % H) * sh; }
  T* row(int64_t bh, int64_t i) const { return head(bh) + i * ld; }
};

// One attention problem; T is float or double.
template <class T>
struct Problem {
  int64_t B, H, Tq, Tk, D, Dv;
  Heads<const T> q, k, v;
  const void* mask = nullptr;  // bool or T, read through mask_stride; or i32 key ranges
  bool mask_is_bool = false;
  bool mask_is_ranges = false;  // [B,H,Tq,2]: row i sees keys [lo, hi)
  int64_t mask_stride[4] = {};
  bool causal = false;
  T scale = 1;

  Problem(const Tensor& tq, const Tensor& tk, const Tensor& tv, const Tensor& m, bool c, double s)
      : B(tq.size(0)), H(tq.size(1)), Tq(tq.size(2)), Tk(tk.size(2)), D(tq.size(3)), Dv(tv.size(3)),
        q(tq), k(tk), v(tv), causal(c), scale(T(s)) {
    if (m.defined()) {
      mask = m.data_ptr();
      mask_is_bool = m.dtype() == DType::b8;
      mask_is_ranges = m.dtype() == DType::i32;
      for (int d = 0; d < 4; ++d) mask_stride[d] = m.stride(d);
    }
  }
  // Keys [0, visible_keys(i)) are visible to query row i under the causal rule.
  int64_t visible_keys(int64_t i) const {
    return causal ? std::clamp<int64_t>(i + (Tk - Tq) + 1, 0, Tk) : Tk;
  }

  // Key range [lo, hi) of query row i (ranges only).
  std::pair<int64_t, int64_t> key_range(int64_t bh, int64_t i) const {
    const int32_t* r = static_cast<const int32_t*>(mask) + (bh / H) * mask_stride[0] + (bh % H) * mask_stride[1] +
                       i * mask_stride[2];
    return {r[0], r[mask_stride[3]]};
  }
  // Keys [first, end) that rows i0 .. i0 + nr - 1 may see: the tiles outside
  // are skipped (all keys without ranges).
  std::pair<int64_t, int64_t> key_span(int64_t bh, int64_t i0, int64_t nr) const {
    if (!mask_is_ranges) return {0, Tk};
    int64_t first = Tk, end = 0;
    for (int64_t r = 0; r < nr; ++r) {
      const auto [lo, hi] = key_range(bh, i0 + r);
      if (hi > lo) first = std::min(first, lo), end = std::max(end, hi);
    }
    return {std::max<int64_t>(first, 0), std::min(end, Tk)};
  }

  // Applies the mask and the causal rule to the score tile S (query rows
  // i0.., keys j0..); hidden scores become -inf.
  void mask_tile(int64_t bh, int64_t i0, int64_t j0, Mat<T>& S) const {
    const int64_t nr = S.rows(), nc = S.cols();
    if (mask_is_ranges) {
      for (int64_t r = 0; r < nr; ++r) {
        const auto [lo, hi] = key_range(bh, i0 + r);
        for (int64_t c = 0; c < nc; ++c)
          if (j0 + c < lo || j0 + c >= hi) S(r, c) = -kInf<T>;
      }
    } else if (mask) {
      const int64_t base = (bh / H) * mask_stride[0] + (bh % H) * mask_stride[1];
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t row = base + (i0 + r) * mask_stride[2] + j0 * mask_stride[3];
        if (mask_is_bool) {
          const bool* m = static_cast<const bool*>(mask) + row;
          for (int64_t c = 0; c < nc; ++c)
            if (!m[c * mask_stride[3]]) S(r, c) = -kInf<T>;
        } else {
          const T* m = static_cast<const T*>(mask) + row;
          for (int64_t c = 0; c < nc; ++c) S(r, c) += m[c * mask_stride[3]];
        }
      }
    }
    if (causal)
      for (int64_t r = 0; r < nr; ++r)
        for (int64_t c = std::max<int64_t>(visible_keys(i0 + r) - j0, 0); c < nc; ++c) S(r, c) = -kInf<T>;
  }
};

// ---- forward

// Query rows [i0, i0 + nr) of head bh: out rows and their log-sum-exp.
template <class T>
void forward_block(const Problem<T>& p, int64_t bh, int64_t i0, int64_t nr, T* score_buf, T* acc_buf,
                   const Heads<T>& out, T* lse) {
  ConstMat<T> Q(p.q.row(bh, i0), nr, p.D, Eigen::OuterStride<>(p.q.ld));
  Mat<T> O(acc_buf, nr, p.Dv, Eigen::OuterStride<>(p.Dv));
  O.setZero();
  T row_max[kBlockQ], row_sum[kBlockQ];
  std::fill_n(row_max, nr, -kInf<T>);
  std::fill_n(row_sum, nr, T(0));

  const auto [kfirst, kspan_end] = p.key_span(bh, i0, nr);
  const int64_t kend = std::min(p.visible_keys(i0 + nr - 1), kspan_end);
  for (int64_t j0 = kfirst / kBlockK * kBlockK; j0 < kend; j0 += kBlockK) {
    const int64_t nc = std::min(kBlockK, kend - j0);
    ConstMat<T> K(p.k.row(bh, j0), nc, p.D, Eigen::OuterStride<>(p.k.ld));
    ConstMat<T> V(p.v.row(bh, j0), nc, p.Dv, Eigen::OuterStride<>(p.v.ld));
    Mat<T> S(score_buf, nr, nc, Eigen::OuterStride<>(kBlockK));
    S.noalias() = p.scale * (Q * K.transpose());
    p.mask_tile(bh, i0, j0, S);
    for (int64_t r = 0; r < nr; ++r) {
      auto s = S.row(r).array();
      const T m = std::max(row_max[r], s.maxCoeff());
      if (m == -kInf<T>) {  // nothing visible yet: contributes nothing
        s.setZero();
        continue;
      }
      const T rescale = std::exp(row_max[r] - m);  // 0 on the first visible tile
      s = (s - m).exp();
      row_sum[r] = row_sum[r] * rescale + s.sum();
      if (rescale != T(1)) O.row(r) *= rescale;
      row_max[r] = m;
    }
    O.noalias() += S * V;
  }

  for (int64_t r = 0; r < nr; ++r) {
    T* o = out.row(bh, i0 + r);
    const bool any = row_sum[r] > T(0);
    for (int64_t c = 0; c < p.Dv; ++c) o[c] = any ? O(r, c) / row_sum[r] : T(0);
    lse[bh * p.Tq + i0 + r] = any ? row_max[r] + std::log(row_sum[r]) : kInf<T>;
  }
}

template <class T>
void forward(const Problem<T>& p, const Heads<T>& out, T* lse) {
  const int64_t nqb = (p.Tq + kBlockQ - 1) / kBlockQ;
  const int64_t items = p.B * p.H * nqb;
#pragma omp parallel
  {
    Buffer<T> score(kBlockQ * kBlockK), acc(kBlockQ * p.Dv);
    // Dynamic: causal blocks near the top of a head have less work.
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t bh = it / nqb, i0 = (it % nqb) * kBlockQ;
      forward_block(p, bh, i0, std::min(kBlockQ, p.Tq - i0), score.data(), acc.data(), out, lse);
    }
  }
}

// ---- backward

template <class T>
struct Backward {
  const Problem<T>& p;
  Heads<const T> dout;
  const T* lse;
  const T* delta;   // rowsum(dout * out) per query row
  Heads<T> dk, dv;  // outputs, written one key block at a time
};

// Key block [j0, j0 + nc) of head bh against every query row that sees it:
// writes its dk and dv rows and adds its share of dq into dq_head [Tq, D]
// (rows dq_ld apart).
template <class T>
void backward_key_block(const Backward<T>& g, int64_t bh, int64_t j0, int64_t nc, T* p_buf, T* dp_buf,
                        T* dq_head, int64_t dq_ld) {
  const Problem<T>& p = g.p;
  ConstMat<T> K(p.k.row(bh, j0), nc, p.D, Eigen::OuterStride<>(p.k.ld));
  ConstMat<T> V(p.v.row(bh, j0), nc, p.Dv, Eigen::OuterStride<>(p.v.ld));
  Mat<T> dK(g.dk.row(bh, j0), nc, p.D, Eigen::OuterStride<>(g.dk.ld));
  Mat<T> dV(g.dv.row(bh, j0), nc, p.Dv, Eigen::OuterStride<>(g.dv.ld));
  dK.setZero();
  dV.setZero();

  // Under the causal rule, row i sees key j0 once i >= j0 - (Tk - Tq).
  const int64_t first_row = p.causal ? std::max<int64_t>(0, j0 - (p.Tk - p.Tq)) : 0;
  for (int64_t i0 = first_row; i0 < p.Tq; i0 += kBlockQ) {
    const int64_t nr = std::min(kBlockQ, p.Tq - i0);
    if (p.mask_is_ranges) {  // no row of this block sees these keys: nothing to add
      const auto [first, end] = p.key_span(bh, i0, nr);
      if (first >= j0 + nc || end <= j0) continue;
    }
    const int64_t row0 = bh * p.Tq + i0;
    ConstMat<T> Q(p.q.row(bh, i0), nr, p.D, Eigen::OuterStride<>(p.q.ld));
    ConstMat<T> dO(g.dout.row(bh, i0), nr, p.Dv, Eigen::OuterStride<>(g.dout.ld));
    Mat<T> P(p_buf, nr, nc, Eigen::OuterStride<>(kBlockK));
    Mat<T> dS(dp_buf, nr, nc, Eigen::OuterStride<>(kBlockK));

    P.noalias() = p.scale * (Q * K.transpose());
    p.mask_tile(bh, i0, j0, P);
    for (int64_t r = 0; r < nr; ++r) {
      if (g.lse[row0 + r] == kInf<T>) P.row(r).setZero();  // a row that sees no key
      else P.row(r) = (P.row(r).array() - g.lse[row0 + r]).exp();
    }
    dV.noalias() += P.transpose() * dO;
    dS.noalias() = dO * V.transpose();  // dP, turned into the scaled dS below
    for (int64_t r = 0; r < nr; ++r)
      dS.row(r) = p.scale * P.row(r).array() * (dS.row(r).array() - g.delta[row0 + r]);
    dK.noalias() += dS.transpose() * Q;
    Mat<T> dQ(dq_head + i0 * dq_ld, nr, p.D, Eigen::OuterStride<>(dq_ld));
    dQ.noalias() += dS * K;
  }
}

template <class T>
void backward(const Problem<T>& p, const Heads<const T>& dout, const Heads<const T>& out, const T* lse,
              const Heads<T>& dq, const Heads<T>& dk, const Heads<T>& dv) {
  const int64_t rows = p.B * p.H * p.Tq, heads = p.B * p.H;
  const int64_t nkb = (p.Tk + kBlockK - 1) / kBlockK;
  std::vector<T> delta(static_cast<size_t>(rows));
#pragma omp parallel for schedule(static) if (rows * p.Dv > kParallelGrain)
  for (int64_t i = 0; i < rows; ++i) {
    const T* d = dout.row(i / p.Tq, i % p.Tq);
    const T* o = out.row(i / p.Tq, i % p.Tq);
    T s = 0;
    for (int64_t c = 0; c < p.Dv; ++c) s += d[c] * o[c];
    delta[size_t(i)] = s;
  }
  const Backward<T> g{p, dout, lse, delta.data(), dk, dv};

  const int nthreads = omp_get_max_threads();
  if (heads >= nthreads) {
    // Enough heads: each thread owns whole heads, so dq, dk, dv have one writer.
#pragma omp parallel
    {
      Buffer<T> pb(kBlockQ * kBlockK), db(kBlockQ * kBlockK);
#pragma omp for schedule(dynamic)
      for (int64_t bh = 0; bh < heads; ++bh) {
        for (int64_t i = 0; i < p.Tq; ++i) std::fill_n(dq.row(bh, i), p.D, T(0));
        for (int64_t kb = 0; kb < nkb; ++kb)
          backward_key_block(g, bh, kb * kBlockK, std::min(kBlockK, p.Tk - kb * kBlockK), pb.data(), db.data(),
                             dq.head(bh), dq.ld);
      }
    }
    return;
  }
  // Few heads: split each head's key blocks over threads. Each thread adds dq
  // into its own buffer; the buffers are summed in thread order afterwards.
  const int64_t head_dq = p.Tq * p.D;
  std::vector<T> partial(static_cast<size_t>(nthreads * head_dq));
  for (int64_t bh = 0; bh < heads; ++bh) {
    std::fill(partial.begin(), partial.end(), T(0));
#pragma omp parallel num_threads(nthreads)
    {
      Buffer<T> pb(kBlockQ * kBlockK), db(kBlockQ * kBlockK);
      T* mine = partial.data() + omp_get_thread_num() * head_dq;
      // Round-robin: causal key blocks near the end see fewer queries.
#pragma omp for schedule(static, 1)
      for (int64_t kb = 0; kb < nkb; ++kb)
        backward_key_block(g, bh, kb * kBlockK, std::min(kBlockK, p.Tk - kb * kBlockK), pb.data(), db.data(), mine,
                           p.D);
    }
    for (int64_t i = 0; i < p.Tq; ++i) {
      T* d = dq.row(bh, i);
      std::fill_n(d, p.D, T(0));
      for (int t = 0; t < nthreads; ++t)
        for (int64_t c = 0; c < p.D; ++c) d[c] += partial[size_t(t * head_dq + i * p.D + c)];
    }
  }
}

// ---- kernel entries

template <class T>
constexpr bool is_half = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

Tensor widen(const Tensor& x) { return x.to(DType::f32); }

void forward_kernel(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                    const Tensor& mask, bool causal, double scale) {
  dispatch_float(q.dtype(), "scaled_dot_product_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_half<T>) {
      // Half inputs: widened copies (the inputs' size) run the f32 kernel.
      Tensor out32 = make_tensor(out.shape(), DType::f32, out.device());
      forward_kernel(out32, lse, widen(q), widen(k), widen(v), mask, causal, scale);
      kernels::copy(out.device(), out, out32);
    } else {
      forward(Problem<T>(q, k, v, mask, causal, scale), Heads<T>(out), lse.data<T>());
    }
  });
}

void backward_kernel(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                     const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& mask,
                     bool causal, double scale) {
  dispatch_float(q.dtype(), "scaled_dot_product_attention backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (is_half<T>) {
      auto f32 = [](const Tensor& x) { return make_tensor(x.shape(), DType::f32, x.device()); };
      Tensor dq32 = f32(dq), dk32 = f32(dk), dv32 = f32(dv);
      backward_kernel(dq32, dk32, dv32, widen(dout), widen(q), widen(k), widen(v), widen(out), lse, mask, causal,
                      scale);
      kernels::copy(dq.device(), dq, dq32);
      kernels::copy(dk.device(), dk, dk32);
      kernels::copy(dv.device(), dv, dv32);
    } else {
      backward(Problem<T>(q, k, v, mask, causal, scale), Heads<const T>(dout), Heads<const T>(out), lse.data<T>(),
               Heads<T>(dq), Heads<T>(dk), Heads<T>(dv));
    }
  });
}

FM_REGISTER_KERNEL(kernels::attention_forward, DeviceType::cpu, forward_kernel);
FM_REGISTER_KERNEL(kernels::attention_backward, DeviceType::cpu, backward_kernel);

}  // namespace
}  // namespace fm::cpu

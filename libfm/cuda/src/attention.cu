// Flash attention on the GPU, FlashAttention-2 style: the score matrix only
// ever exists one tile at a time, in registers. Math runs on CUDA cores (f32,
// or f64 for f64 inputs); no tensor cores yet.
//
// A block of 128 threads is 16 row groups x 8 column groups. It owns a tile
// of rows (queries, or keys in the dk/dv pass) and streams tiles of the other
// side through shared memory. Thread (rg, cg) computes the scores of its R
// consecutive rows against columns cg, cg + 8, ...; the 8 threads of a row
// group are adjacent lanes, so row reductions and the P @ V style products
// pass values by warp shuffles instead of a shared-memory P tile (which keeps
// shared memory at two blocks per SM for head dim 128).
//
// Forward: one block per (head, 64 query rows), online softmax over key tiles.
// Backward: delta = rowsum(dout * out); one block per (head, 64 keys) loops over
// query tiles accumulating dk, dv; a separate block per (head, 64 query rows)
// recomputes P and accumulates dq. No atomics: every output has one writer,
// so results are deterministic.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "attention_paths.h"
#include "fm/cuda/attention.h"
#include "fm/kernels/attention.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

namespace fm::cuda {
namespace {

using kernels::compute_t;

constexpr const char* kOp = "scaled_dot_product_attention (cuda)";
constexpr int kAttnThreads = 128;
constexpr int kColGroups = 8;  // lanes sharing a row
constexpr int kRowGroups = kAttnThreads / kColGroups;

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Rows owned per block and columns streamed per step. f64 halves them to stay
// within shared memory; the backward streams narrower tiles because it keeps
// four operand tiles in shared memory instead of three.
template <class A>
struct Tiles {
  static constexpr int rows = 64, fwd_cols = 64, bwd_cols = 32;
};
template <>
struct Tiles<double> {
  static constexpr int rows = 32, fwd_cols = 32, bwd_cols = 32;
};

__device__ __forceinline__ float exp_a(float x) { return expf(x); }
__device__ __forceinline__ double exp_a(double x) { return exp(x); }
__device__ __forceinline__ float log_a(float x) { return logf(x); }
__device__ __forceinline__ double log_a(double x) { return log(x); }

template <class A, class T>
__device__ __forceinline__ A to_acc(T x) {
  return A(compute_t<T>(x));
}
template <class T, class A>
__device__ __forceinline__ T from_acc(A x) {
  return T(compute_t<T>(x));
}

// A [B,H,T,D] operand with unit stride along D. `vec`: 16-byte loads are
// safe (aligned base, strides and D multiples of a 16-byte vector).
template <class T>
struct Heads {
  T* data = nullptr;
  int64_t H = 1, sb = 0, sh = 0, ld = 0;
  bool vec = false;

  __device__ T* row(int64_t bh, int64_t i) const { return data + (bh / H) * sb + (bh % H) * sh + i * ld; }
};

template <class T>
Heads<T> heads(const Tensor& t) {
  if (t.size(3) > 1 && t.stride(3) != 1) error(kOp, ": rows of ", t.shape(), " need unit stride");
  constexpr int64_t V = 16 / int64_t(sizeof(T));
  Heads<T> h;
  h.data = static_cast<T*>(t.data_ptr());
  h.H = t.size(1);
  h.sb = t.stride(0);
  h.sh = t.stride(1);
  h.ld = t.stride(2);
  h.vec = reinterpret_cast<uintptr_t>(h.data) % 16 == 0 && h.sb % V == 0 && h.sh % V == 0 && h.ld % V == 0 &&
          t.size(3) % V == 0;
  return h;
}

// One attention problem, passed to the kernels by value.
template <class T>
struct Attn {
  using A = acc_t<T>;
  Heads<const T> q, k, v;
  const void* mask = nullptr;  // bool or A, or i32 key ranges
  bool mask_bool = false;
  bool mask_ranges = false;  // [B,H,Tq,2]: row i sees keys [lo, hi)
  int64_t ms[4] = {};
  int64_t H = 1, Tq = 0, Tk = 0;
  int D = 0, Dv = 0;
  bool causal = false;
  A scale = 1;

  // Keys [0, visible_keys(i)) are visible to query row i under the causal rule.
  __device__ int64_t visible_keys(int64_t i) const {
    return causal ? std::max<int64_t>(0, std::min<int64_t>(i + (Tk - Tq) + 1, Tk)) : Tk;
  }
  __device__ int64_t mask_base(int64_t bh) const { return (bh / H) * ms[0] + (bh % H) * ms[1]; }
  // Score s of query i and key j after the mask, the causal rule and the
  // bounds of the tiles (rows or keys past the end are hidden): -inf if hidden.
  __device__ A score(A s, int64_t mbase, int64_t i, int64_t j) const {
    if (i >= Tq || j >= Tk || (causal && j > i + (Tk - Tq))) return -std::numeric_limits<A>::infinity();
    if (mask_ranges) {
      const int32_t* r = static_cast<const int32_t*>(mask) + mbase + i * ms[2];
      if (j < r[0] || j >= r[ms[3]]) return -std::numeric_limits<A>::infinity();
    } else if (mask) {
      const int64_t off = mbase + i * ms[2] + j * ms[3];
      if (mask_bool) {
        if (!static_cast<const bool*>(mask)[off]) return -std::numeric_limits<A>::infinity();
      } else {
        s += static_cast<const A*>(mask)[off];
      }
    }
    return s;
  }
};

template <class T>
Attn<T> problem(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal, double scale) {
  using A = acc_t<T>;
  Attn<T> p;
  p.q = heads<const T>(q);
  p.k = heads<const T>(k);
  p.v = heads<const T>(v);
  if (mask.defined()) {
    p.mask_bool = mask.dtype() == DType::b8;
    p.mask_ranges = mask.dtype() == DType::i32;
    if (!p.mask_bool && !p.mask_ranges && mask.dtype() != (std::is_same_v<A, double> ? DType::f64 : DType::f32))
      error(kOp, ": additive mask must be ", std::is_same_v<A, double> ? "float64" : "float32", ", got ",
            mask.dtype());
    p.mask = mask.data_ptr();
    for (int d = 0; d < 4; ++d) p.ms[d] = mask.stride(d);
  }
  p.H = q.size(1);
  p.Tq = q.size(2);
  p.Tk = k.size(2);
  p.D = int(q.size(3));
  p.Dv = int(v.size(3));
  p.causal = causal;
  p.scale = A(scale);
  return p;
}

// ---- device building blocks

// Rows [0, n) of a tile whose rows are `sld` apart in global memory into
// shared memory (rows `dld` apart, as A); rows [n, rows) become zeros.
template <int rows, class A, class T>
__device__ void load_tile(A* dst, int dld, const T* src, int64_t sld, int n, int cols, bool vec) {
  constexpr int V = 16 / sizeof(T);
  if (vec) {
    const int per_row = cols / V;
    for (int idx = threadIdx.x; idx < rows * per_row; idx += kAttnThreads) {
      const int r = idx / per_row, c = (idx - r * per_row) * V;
      A* d = dst + r * dld + c;
      if (r < n) {
        alignas(16) T x[V];
        *reinterpret_cast<uint4*>(x) = *reinterpret_cast<const uint4*>(src + r * sld + c);
#pragma unroll
        for (int e = 0; e < V; ++e) d[e] = to_acc<A>(x[e]);
      } else {
#pragma unroll
        for (int e = 0; e < V; ++e) d[e] = A(0);
      }
    }
  } else {
    for (int idx = threadIdx.x; idx < rows * cols; idx += kAttnThreads) {
      const int r = idx / cols, c = idx - r * cols;
      dst[r * dld + c] = r < n ? to_acc<A>(src[r * sld + c]) : A(0);
    }
  }
}

// acc[r][c] += X[r] . Y[8c] over `len` elements: X points at this thread's
// first row, Y at its first column row, both in shared memory, rows ld apart.
// ld odd (head dim even) keeps the row groups and column groups of a warp on
// distinct banks.
template <int R, int C, class A>
__device__ __forceinline__ void tile_dot(A (&acc)[R][C], const A* X, const A* Y, int ld, int len) {
#pragma unroll 4
  for (int d = 0; d < len; ++d) {
    A x[R], y[C];
#pragma unroll
    for (int r = 0; r < R; ++r) x[r] = X[r * ld + d];
#pragma unroll
    for (int c = 0; c < C; ++c) y[c] = Y[c * kColGroups * ld + d];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int c = 0; c < C; ++c) acc[r][c] += x[r] * y[c];
  }
}

// acc[r][n] += sum_j P[r][j] * Z[j][8n] over the 8 * C streamed columns j,
// where P[r][j] is p[r][j / 8] of lane j % 8 of this row group and Z points
// at this thread's first output column. Columns past the operand's width read
// whatever follows in shared memory (the buffers end with slack) and are
// never stored. Every lane of the warp must call it.
template <int R, int C, int N, class A>
__device__ __forceinline__ void tile_mix(A (&acc)[R][N], const A (&p)[R][C], const A* Z, int ldz) {
#pragma unroll
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int src = 0; src < kColGroups; ++src) {
      A pv[R];
#pragma unroll
      for (int r = 0; r < R; ++r) pv[r] = __shfl_sync(0xffffffffu, p[r][c], src, kColGroups);
      const A* z = Z + (c * kColGroups + src) * ldz;
#pragma unroll
      for (int n = 0; n < N; ++n) {
        const A zv = z[kColGroups * n];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r][n] += pv[r] * zv;
      }
    }
  }
}

template <class A>
__device__ __forceinline__ A group_max(A v) {
#pragma unroll
  for (int o = 1; o < kColGroups; o <<= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
template <class A>
__device__ __forceinline__ A group_sum(A v) {
#pragma unroll
  for (int o = 1; o < kColGroups; o <<= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- forward

template <class T, int NC>
__global__ void __launch_bounds__(kAttnThreads)
    forward_kernel(Attn<T> p, Heads<T> out, acc_t<T>* lse, int64_t ntiles) {
  using A = acc_t<T>;
  constexpr int BR = Tiles<A>::rows, BC = Tiles<A>::fwd_cols;
  constexpr int R = BR / kRowGroups, C = BC / kColGroups, N = NC / kColGroups;
  constexpr A kInf = std::numeric_limits<A>::infinity();
  extern __shared__ __align__(16) unsigned char smem[];
  const int ldq = p.D + 1, ldv = p.Dv + 1;
  A* Qs = reinterpret_cast<A*>(smem);
  A* Ks = Qs + BR * ldq;
  A* Vs = Ks + BC * ldq;

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t i0 = (ntiles - 1 - blockIdx.x % ntiles) * BR;  // causal: the longest tiles start first
  const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
  const int nq = int(std::min<int64_t>(BR, p.Tq - i0));
  const int64_t mbase = p.mask ? p.mask_base(bh) : 0;

  load_tile<BR>(Qs, ldq, p.q.row(bh, i0), p.q.ld, nq, p.D, p.q.vec);
  A o[R][N] = {}, m[R], l[R];
#pragma unroll
  for (int r = 0; r < R; ++r) m[r] = -kInf, l[r] = A(0);

  const int64_t kend = p.visible_keys(i0 + nq - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += BC) {
    const int nk = int(std::min<int64_t>(BC, kend - j0));
    __syncthreads();  // the previous tile is consumed
    load_tile<BC>(Ks, ldq, p.k.row(bh, j0), p.k.ld, nk, p.D, p.k.vec);
    load_tile<BC>(Vs, ldv, p.v.row(bh, j0), p.v.ld, nk, p.Dv, p.v.vec);
    __syncthreads();

    A s[R][C] = {};
    tile_dot(s, Qs + rg * R * ldq, Ks + cg * ldq, ldq, p.D);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = i0 + rg * R + r;
      A mx = -kInf;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        s[r][c] = p.score(p.scale * s[r][c], mbase, i, j0 + cg + kColGroups * c);
        mx = fmax(mx, s[r][c]);
      }
      const A mnew = fmax(m[r], group_max(mx));
      // A row with nothing visible yet subtracts 0, not -inf, so its
      // probabilities are exp(-inf) = 0 and no NaN appears.
      const A base = mnew == -kInf ? A(0) : mnew;
      const A rescale = exp_a(m[r] - base);  // 0 on the first visible tile
      A sum = 0;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        s[r][c] = exp_a(s[r][c] - base);
        sum += s[r][c];
      }
      l[r] = l[r] * rescale + group_sum(sum);
#pragma unroll
      for (int n = 0; n < N; ++n) o[r][n] *= rescale;
      m[r] = mnew;
    }
    tile_mix(o, s, Vs + cg, ldv);
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + rg * R + r;
    if (i >= p.Tq) continue;
    const bool any = l[r] > A(0);
    T* orow = out.row(bh, i);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const int c = cg + kColGroups * n;
      if (c < p.Dv) orow[c] = from_acc<T>(any ? o[r][n] / l[r] : A(0));
    }
    if (cg == 0) lse[bh * p.Tq + i] = any ? m[r] + log_a(l[r]) : kInf;
  }
}

// ---- backward

template <class T>
struct Grads {
  Heads<const T> dout;
  const acc_t<T>* lse;
  const acc_t<T>* delta;
  Heads<T> dq, dk, dv;
};

// delta[row] = dout[row] . out[row], one warp per row.
template <class T>
__global__ void delta_kernel(Heads<const T> dout, Heads<const T> out, int64_t Tq, int Dv, int64_t rows,
                             acc_t<T>* delta) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp leaves together
  const int lane = threadIdx.x % 32;
  const T* a = dout.row(row / Tq, row % Tq);
  const T* b = out.row(row / Tq, row % Tq);
  A s = 0;
  for (int c = lane; c < Dv; c += 32) s += to_acc<A>(a[c]) * to_acc<A>(b[c]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) delta[row] = s;
}

// dk, dv of one tile of BR keys: streams every query tile that sees it.
// Thread (rg, cg) holds keys rg * R + r against queries cg + 8c.
template <class T, int NC>
__global__ void __launch_bounds__(kAttnThreads) dkdv_kernel(Attn<T> p, Grads<T> g, int64_t ntiles) {
  using A = acc_t<T>;
  constexpr int BR = Tiles<A>::rows, BC = Tiles<A>::bwd_cols;
  constexpr int R = BR / kRowGroups, C = BC / kColGroups, N = NC / kColGroups;
  constexpr A kInf = std::numeric_limits<A>::infinity();
  extern __shared__ __align__(16) unsigned char smem[];
  const int ldk = p.D + 1, ldv = p.Dv + 1;
  A* Ks = reinterpret_cast<A*>(smem);
  A* Vs = Ks + BR * ldk;
  A* Qs = Vs + BR * ldv;
  A* dOs = Qs + BC * ldk;

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t j0 = (blockIdx.x % ntiles) * BR;  // causal: low key tiles see the most queries, start first
  const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
  const int nk = int(std::min<int64_t>(BR, p.Tk - j0));
  const int64_t mbase = p.mask ? p.mask_base(bh) : 0;

  load_tile<BR>(Ks, ldk, p.k.row(bh, j0), p.k.ld, nk, p.D, p.k.vec);
  load_tile<BR>(Vs, ldv, p.v.row(bh, j0), p.v.ld, nk, p.Dv, p.v.vec);
  A dk[R][N] = {}, dv[R][N] = {};

  // Under the causal rule, query i sees key j0 once i >= j0 - (Tk - Tq).
  const int64_t first = p.causal ? std::max<int64_t>(0, j0 - (p.Tk - p.Tq)) : 0;
  for (int64_t i0 = first; i0 < p.Tq; i0 += BC) {
    const int nq = int(std::min<int64_t>(BC, p.Tq - i0));
    __syncthreads();
    load_tile<BC>(Qs, ldk, p.q.row(bh, i0), p.q.ld, nq, p.D, p.q.vec);
    load_tile<BC>(dOs, ldv, g.dout.row(bh, i0), g.dout.ld, nq, p.Dv, g.dout.vec);
    __syncthreads();

    A pt[R][C] = {}, ds[R][C] = {};  // P and dS, transposed (keys x queries)
    tile_dot(pt, Ks + rg * R * ldk, Qs + cg * ldk, ldk, p.D);
    tile_dot(ds, Vs + rg * R * ldv, dOs + cg * ldv, ldv, p.Dv);  // dP for now
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t i = i0 + cg + kColGroups * c;
      A L = kInf, delta = 0;  // rows past the end get P = 0
      if (i < p.Tq) L = g.lse[bh * p.Tq + i], delta = g.delta[bh * p.Tq + i];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        // A row that sees no key has lse = +inf and P = 0.
        const A pr = L == kInf ? A(0) : exp_a(p.score(p.scale * pt[r][c], mbase, i, j0 + rg * R + r) - L);
        pt[r][c] = pr;
        ds[r][c] = p.scale * pr * (ds[r][c] - delta);
      }
    }
    tile_mix(dv, pt, dOs + cg, ldv);
    tile_mix(dk, ds, Qs + cg, ldk);
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = j0 + rg * R + r;
    if (j >= p.Tk) continue;
    T* krow = g.dk.row(bh, j);
    T* vrow = g.dv.row(bh, j);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const int c = cg + kColGroups * n;
      if (c < p.D) krow[c] = from_acc<T>(dk[r][n]);
      if (c < p.Dv) vrow[c] = from_acc<T>(dv[r][n]);
    }
  }
}

// dq of one tile of BR query rows: recomputes P and dS over the visible key
// tiles (the price of a deterministic dq without atomics).
template <class T, int NC>
__global__ void __launch_bounds__(kAttnThreads) dq_kernel(Attn<T> p, Grads<T> g, int64_t ntiles) {
  using A = acc_t<T>;
  constexpr int BR = Tiles<A>::rows, BC = Tiles<A>::bwd_cols;
  constexpr int R = BR / kRowGroups, C = BC / kColGroups, N = NC / kColGroups;
  constexpr A kInf = std::numeric_limits<A>::infinity();
  extern __shared__ __align__(16) unsigned char smem[];
  const int ldq = p.D + 1, ldv = p.Dv + 1;
  A* Qs = reinterpret_cast<A*>(smem);
  A* dOs = Qs + BR * ldq;
  A* Ks = dOs + BR * ldv;
  A* Vs = Ks + BC * ldq;

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t i0 = (ntiles - 1 - blockIdx.x % ntiles) * BR;
  const int rg = threadIdx.x / kColGroups, cg = threadIdx.x % kColGroups;
  const int nq = int(std::min<int64_t>(BR, p.Tq - i0));
  const int64_t mbase = p.mask ? p.mask_base(bh) : 0;

  load_tile<BR>(Qs, ldq, p.q.row(bh, i0), p.q.ld, nq, p.D, p.q.vec);
  load_tile<BR>(dOs, ldv, g.dout.row(bh, i0), g.dout.ld, nq, p.Dv, g.dout.vec);
  A L[R], delta[R], dq[R][N] = {};
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + rg * R + r;
    L[r] = i < p.Tq ? g.lse[bh * p.Tq + i] : kInf;
    delta[r] = i < p.Tq ? g.delta[bh * p.Tq + i] : A(0);
  }

  const int64_t kend = p.visible_keys(i0 + nq - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += BC) {
    const int nk = int(std::min<int64_t>(BC, kend - j0));
    __syncthreads();
    load_tile<BC>(Ks, ldq, p.k.row(bh, j0), p.k.ld, nk, p.D, p.k.vec);
    load_tile<BC>(Vs, ldv, p.v.row(bh, j0), p.v.ld, nk, p.Dv, p.v.vec);
    __syncthreads();

    A s[R][C] = {}, ds[R][C] = {};
    tile_dot(s, Qs + rg * R * ldq, Ks + cg * ldq, ldq, p.D);
    tile_dot(ds, dOs + rg * R * ldv, Vs + cg * ldv, ldv, p.Dv);  // dP for now
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int64_t i = i0 + rg * R + r;
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const A pr = L[r] == kInf ? A(0) : exp_a(p.score(p.scale * s[r][c], mbase, i, j0 + cg + kColGroups * c) - L[r]);
        ds[r][c] = p.scale * pr * (ds[r][c] - delta[r]);
      }
    }
    tile_mix(dq, ds, Ks + cg, ldq);
  }

#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t i = i0 + rg * R + r;
    if (i >= p.Tq) continue;
    T* qrow = g.dq.row(bh, i);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      const int c = cg + kColGroups * n;
      if (c < p.D) qrow[c] = from_acc<T>(dq[r][n]);
    }
  }
}

// ---- host side

// Calls f with the register width (columns per row, a multiple of 8 lanes x
// a compile-time count) that covers head dims D and Dv.
template <class F>
void with_columns(int D, int Dv, F&& f) {
  const int cols = std::max(D, Dv);
  if (cols <= 32) f(std::integral_constant<int, 32>{});
  else if (cols <= 64) f(std::integral_constant<int, 64>{});
  else if (cols <= 96) f(std::integral_constant<int, 96>{});
  else if (cols <= 128) f(std::integral_constant<int, 128>{});
  else error(kOp, ": head dim ", D, " (values ", Dv, ") is above the supported 128");
}

// Kernels above 48 KiB of dynamic shared memory must opt in (per device, so
// on every launch: it is a cheap attribute write).
template <class K>
void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    FM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

unsigned grid_of(int64_t heads, int64_t tiles) {
  const int64_t n = heads * tiles;
  if (n > int64_t(std::numeric_limits<int>::max())) error(kOp, ": ", n, " blocks exceed the grid limit");
  return unsigned(n);
}

// Shared memory of `rows` x `cols` accumulator values. Every kernel adds one
// row of NC as slack for tile_mix's reads past the last operand row.
template <class T>
size_t tile_bytes(int rows, int64_t cols) {
  return size_t(rows) * size_t(cols) * sizeof(acc_t<T>);
}

// ---- which kernels run (fm/cuda/attention.h)

const char* const kChoices[] = {"auto", "cudnn", "mma", "simt"};
enum Choice : int { kAuto, kCudnn, kMma, kSimt };

Choice parse_choice(const std::string& which, const char* from) {
  for (int c = kAuto; c <= kSimt; ++c)
    if (which == kChoices[c]) return Choice(c);
  error(from, ": attention kernels \"", which, "\" are none of auto, cudnn, mma, simt");
}

std::atomic<int>& choice() {
  static std::atomic<int> c{[] {
    const char* e = std::getenv("FM_CUDA_ATTENTION");
    return e && *e ? parse_choice(e, "FM_CUDA_ATTENTION") : kAuto;
  }()};
  return c;
}

std::atomic<const char*> last_kernel{""};

// Whether the current choice lets `path` try first.
bool tries(Choice path) {
  const int c = choice().load(std::memory_order_relaxed);
  return c == kAuto || c == path;
}

void ran(const char* path) { last_kernel.store(path, std::memory_order_relaxed); }

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& mask, bool causal, double scale) {
  if (tries(kCudnn) && attention_cudnn_forward(out, lse, q, k, v, mask, causal, scale)) return ran("cudnn");
  if (tries(kMma) && attention_mma_forward(out, lse, q, k, v, mask, causal, scale)) return ran("mma");
  ran("simt");
  kernels::dispatch_float(q.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const Attn<T> p = problem<T>(q, k, v, mask, causal, scale);
    const Heads<T> o = heads<T>(out);
    const int64_t BH = q.size(0) * p.H;
    if (BH == 0 || p.Tq == 0) return;
    with_columns(p.D, p.Dv, [&](auto nc) {
      constexpr int NC = decltype(nc)::value, BR = Tiles<A>::rows, BC = Tiles<A>::fwd_cols;
      const int64_t ntiles = (p.Tq + BR - 1) / BR;
      const size_t smem = tile_bytes<T>(BR + BC, p.D + 1) + tile_bytes<T>(BC, p.Dv + 1) + tile_bytes<T>(1, NC);
      auto kernel = forward_kernel<T, NC>;
      allow_smem(kernel, smem);
      kernel<<<grid_of(BH, ntiles), kAttnThreads, smem, stream()>>>(p, o, static_cast<A*>(lse.data_ptr()), ntiles);
      check_launch();
    });
  });
}

void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& mask,
                        bool causal, double scale) {
  if (tries(kCudnn) && attention_cudnn_backward(dq, dk, dv, dout, q, k, v, out, lse, mask, causal, scale))
    return ran("cudnn");
  if (tries(kMma) && attention_mma_backward(dq, dk, dv, dout, q, k, v, out, lse, mask, causal, scale))
    return ran("mma");
  ran("simt");
  kernels::dispatch_float(q.dtype(), kOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const Attn<T> p = problem<T>(q, k, v, mask, causal, scale);
    Grads<T> g{heads<const T>(dout), static_cast<const A*>(lse.data_ptr()), nullptr,
               heads<T>(dq),         heads<T>(dk),                          heads<T>(dv)};
    const Heads<const T> o = heads<const T>(out);
    const int64_t BH = q.size(0) * p.H;
    if (BH == 0) return;

    Tensor delta;
    if (p.Tq > 0) {
      delta = make_tensor({BH * p.Tq}, std::is_same_v<A, double> ? DType::f64 : DType::f32, q.device());
      g.delta = static_cast<const A*>(delta.data_ptr());
      constexpr int warps = 8;
      const int64_t rows = BH * p.Tq;
      delta_kernel<T><<<grid_of((rows + warps - 1) / warps, 1), warps * 32, 0, stream()>>>(
          g.dout, o, p.Tq, p.Dv, rows, static_cast<A*>(delta.data_ptr()));
      check_launch();
    }
    with_columns(p.D, p.Dv, [&](auto nc) {
      constexpr int NC = decltype(nc)::value, BR = Tiles<A>::rows, BC = Tiles<A>::bwd_cols;
      const size_t smem = tile_bytes<T>(BR + BC, p.D + 1) + tile_bytes<T>(BR + BC, p.Dv + 1) + tile_bytes<T>(1, NC);
      if (p.Tk > 0) {  // dk, dv (zeros where no query sees a key)
        const int64_t ntiles = (p.Tk + BR - 1) / BR;
        auto kernel = dkdv_kernel<T, NC>;
        allow_smem(kernel, smem);
        kernel<<<grid_of(BH, ntiles), kAttnThreads, smem, stream()>>>(p, g, ntiles);
        check_launch();
      }
      if (p.Tq > 0) {
        const int64_t ntiles = (p.Tq + BR - 1) / BR;
        auto kernel = dq_kernel<T, NC>;
        allow_smem(kernel, smem);
        kernel<<<grid_of(BH, ntiles), kAttnThreads, smem, stream()>>>(p, g, ntiles);
        check_launch();
      }
    });
    // `delta` goes back to the caching allocator here; the kernels reading it
    // run before any later user of the current stream.
  });
}

FM_REGISTER_KERNEL(kernels::attention_forward, DeviceType::cuda, attention_forward);
FM_REGISTER_KERNEL(kernels::attention_backward, DeviceType::cuda, attention_backward);

}  // namespace

void set_attention_kernels(const std::string& which) { choice().store(parse_choice(which, "set_attention_kernels")); }
std::string attention_kernels() { return kChoices[choice().load()]; }
std::string last_attention_kernel() { return last_kernel.load(); }

}  // namespace fm::cuda

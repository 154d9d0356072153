// Flash attention on tensor cores (nvcuda::wmma, 16x16x16 bf16/f16 tiles
// with f32 accumulators) for the common training case: bf16 or f16, head
// dim 64 or 128 (D == Dv), no mask tensor, rows 16-byte aligned. Every other
// case returns false and runs on the SIMT kernels of attention.cu, which
// this file mirrors (same causal rule, lse convention and tile walk).
//
// A block is 4 warps; each warp owns 16 rows of the block's 64 (queries, or
// keys in the dk/dv pass) and streams tiles of the other side through
// shared memory. Products run on tensor cores; the element-wise softmax
// steps go through a per-warp f32 score tile in shared memory (fragment
// element order is never assumed), where lane l handles row l % 16 and
// every other float4 of it (l / 16 picks which), so two lanes share a row
// and combine by one shuffle. Probabilities (and dS) go back to shared
// memory as 16-bit values for the next product. Scores run in base 2:
// s * scale * log2(e) against exp2.
//
// Forward: one block per (head, 64 queries), online softmax over tiles of
// 64 keys (32 at head dim 128, to stay within registers). The running
// output lives in accumulator fragments; its per-row rescale uses a map
// from fragment element to row learnt at start by loading a known tile (so
// it holds for whatever layout wmma uses).
// Backward: delta = rowsum(dout * out); one block per (head, 64 keys) loops
// over query tiles accumulating dk, dv; a block per (head, 64 queries)
// recomputes P and accumulates dq; streamed tiles are 64 rows (32 at head
// dim 128). Every output has one writer: no atomics, deterministic.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>

#include "attention_paths.h"
#include "fm/half.h"
#include "fm/tensor_impl.h"
#include "launch.cuh"

// bf16 fragments need sm_80; older device passes compile a trap (the host
// side never launches them there, see arch_ok).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FM_ATTN_MMA 1
#endif

namespace fm::cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarps = 4;
constexpr int kAttnThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // rows a block owns
constexpr float kLog2e = 1.4426950408889634f;
[[maybe_unused]] constexpr float kLn2 = 0.6931471805599453f;
[[maybe_unused]] constexpr float kInf = std::numeric_limits<float>::infinity();

// fm's 16-bit storage types and the wmma element types with their bits.
template <class T>
struct Elem;
template <>
struct Elem<bf16> {
  using type = __nv_bfloat16;
  static __device__ uint32_t pack(float a, float b) {
    const __nv_bfloat162 t = __floats2bfloat162_rn(a, b);
    uint32_t u;
    memcpy(&u, &t, 4);
    return u;
  }
  static __device__ float2 unpack(uint32_t u) {
    __nv_bfloat162 t;
    memcpy(&t, &u, 4);
    return __bfloat1622float2(t);
  }
};
template <>
struct Elem<f16> {
  using type = __half;
  static __device__ uint32_t pack(float a, float b) {
    const __half2 t = __floats2half2_rn(a, b);
    uint32_t u;
    memcpy(&u, &t, 4);
    return u;
  }
  static __device__ float2 unpack(uint32_t u) {
    __half2 t;
    memcpy(&t, &u, 4);
    return __half22float2(t);
  }
};

template <class E>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, E, wmma::row_major>;
template <class E>
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::row_major>;
template <class E>
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, E, wmma::col_major>;
using Acc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// A [B,H,T,D] operand of 16-bit values with unit stride along D.
struct Rows {
  uint16_t* data = nullptr;
  int64_t H = 1, sb = 0, sh = 0, ld = 0;
  __device__ uint16_t* row(int64_t bh, int64_t i) const { return data + (bh / H) * sb + (bh % H) * sh + i * ld; }
};

Rows rows_of(const Tensor& t) {
  return {static_cast<uint16_t*>(const_cast<void*>(t.data_ptr())), t.size(1), t.stride(0), t.stride(1), t.stride(2)};
}

// The mma path reads and writes whole rows as 16-byte vectors.
bool vector_rows(const Tensor& t) {
  return t.dim() == 4 && t.stride(3) == 1 && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 &&
         t.stride(0) % 8 == 0 && t.stride(1) % 8 == 0 && t.stride(2) % 8 == 0;
}

struct Problem {
  Rows q, k, v;
  int64_t Tq = 0, Tk = 0;
  bool causal = false;
  float scale = 1, scale_log2 = kLog2e;

  // Keys [0, key_end(i)) are visible to query i; none to padding rows past Tq.
  __device__ int64_t key_end(int64_t i) const {
    if (i >= Tq) return 0;
    return causal ? std::max<int64_t>(0, std::min<int64_t>(i + (Tk - Tq) + 1, Tk)) : Tk;
  }
  // Largest key_end over query rows [i, i + 16): the keys a warp must see.
  __device__ int64_t warp_key_end(int64_t i) const {
    return i >= Tq ? 0 : key_end(std::min<int64_t>(i + 15, Tq - 1));
  }
};

struct Grads {
  Rows dout, dq, dk, dv;
  const float* lse = nullptr;
  const float* delta = nullptr;
};

// Byte offsets in shared memory: `own` tiles of kRows rows and two tiles of
// W streamed rows (head dim D; rows D + 8 apart so the 8 rows an ldmatrix
// reads fall on distinct banks), then per warp an f32 tile [16][W + 4] and a
// 16-bit tile [16][W + 8], then 128 floats of row data. wmma needs 32-byte
// aligned tile pointers: every offset below is a multiple of 32.
template <int D, int W, int own>
struct Smem {
  static constexpr int LD = D + 8, LDS = W + 4, LDP = W + 8;
  static constexpr size_t str = size_t(own) * kRows * LD * 2;
  static constexpr size_t s = str + size_t(2) * W * LD * 2;
  static constexpr size_t p = s + size_t(kWarps) * 16 * LDS * 4;
  static constexpr size_t st = p + size_t(kWarps) * 16 * LDP * 2;
  static constexpr size_t bytes = st + 128 * 4;
  static_assert(str % 32 == 0 && s % 32 == 0 && p % 32 == 0 && st % 32 == 0, "wmma tiles need 32-byte alignment");
  static_assert(bytes <= 99 * 1024, "over the shared memory of a block");
};

// Rows [0, n) of a ROWS x D tile (global rows `ld` apart) into shared memory
// (rows D + 8 apart); rows [n, ROWS) become zeros, so padded keys and
// queries add exact zeros to every product.
template <int ROWS, int D>
__device__ __forceinline__ void load_tile(uint16_t* dst, const uint16_t* src, int64_t ld, int n) {
  constexpr int kSeg = D / 8, kIters = ROWS * kSeg / kAttnThreads;
  static_assert(ROWS * kSeg % kAttnThreads == 0, "tile does not split evenly over the block");
#pragma unroll
  for (int t = 0; t < kIters; ++t) {
    const int idx = threadIdx.x + t * kAttnThreads, r = idx / kSeg, c = (idx % kSeg) * 8;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (r < n) x = *reinterpret_cast<const uint4*>(src + r * ld + c);
    *reinterpret_cast<uint4*>(dst + r * (D + 8) + c) = x;
  }
}

// X[16 x W] = A[16 x K] B^T, B given as W rows of K (both in shared memory,
// rows lda / ldb apart); stored to the f32 tile S (rows lds apart).
template <class E, int W, int K>
__device__ __forceinline__ void product_abt(float* S, int lds, const E* A, int lda, const E* B, int ldb) {
  Acc acc[W / 16];
#pragma unroll
  for (int n = 0; n < W / 16; ++n) wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    FragA<E> a;
    wmma::load_matrix_sync(a, A + kk * 16, lda);
#pragma unroll
    for (int n = 0; n < W / 16; ++n) {
      FragBCol<E> b;
      wmma::load_matrix_sync(b, B + n * 16 * ldb + kk * 16, ldb);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
#pragma unroll
  for (int n = 0; n < W / 16; ++n) wmma::store_matrix_sync(S + n * 16, acc[n], lds, wmma::mem_row_major);
}

// acc[16 x N] += A[16 x K] B, A the 16-bit tile (rows lda apart), B [K x N]
// row-major (rows ldb apart).
template <class E, int K, int N>
__device__ __forceinline__ void product_ab(Acc (&acc)[N / 16], const E* A, int lda, const E* B, int ldb) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    FragA<E> a;
    wmma::load_matrix_sync(a, A + kk * 16, lda);
#pragma unroll
    for (int n = 0; n < N / 16; ++n) {
      FragBRow<E> b;
      wmma::load_matrix_sync(b, B + kk * 16 * ldb + n * 16, ldb);
      wmma::mma_sync(acc[n], a, b, acc[n]);
    }
  }
}

// Writes the accumulators of a warp's 16 x D rows to global rows [i0, i0 +
// 16) below `end`, each row times scale[r] when given, through the warp's
// f32 tile S [16][W + 4] W columns at a time.
template <class T, int D, int W>
__device__ __forceinline__ void store_rows(const Rows& dst, int64_t bh, int64_t i0, int64_t end, Acc (&acc)[D / 16],
                                           float* S, const float* scale) {
  constexpr int LDS = W + 4, kSeg = W / 8;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int c0 = 0; c0 < D; c0 += W) {
#pragma unroll
    for (int n = 0; n < W / 16; ++n) wmma::store_matrix_sync(S + n * 16, acc[c0 / 16 + n], LDS, wmma::mem_row_major);
    __syncwarp();
#pragma unroll
    for (int idx = lane; idx < 16 * kSeg; idx += 32) {
      const int r = idx / kSeg, c = (idx % kSeg) * 8;
      if (i0 + r >= end) continue;
      const float f = scale ? scale[r] : 1.0f;
      const float4 a = *reinterpret_cast<const float4*>(S + r * LDS + c);
      const float4 b = *reinterpret_cast<const float4*>(S + r * LDS + c + 4);
      uint4 x;
      x.x = Elem<T>::pack(a.x * f, a.y * f);
      x.y = Elem<T>::pack(a.z * f, a.w * f);
      x.z = Elem<T>::pack(b.x * f, b.y * f);
      x.w = Elem<T>::pack(b.z * f, b.w * f);
      *reinterpret_cast<uint4*>(dst.row(bh, i0 + r) + c0 + c) = x;
    }
    __syncwarp();  // S is rewritten next round
  }
}

// Four 16-bit values of a probability tile from f32.
template <class T>
__device__ __forceinline__ void put4(void* dst, float a, float b, float c, float d) {
  *reinterpret_cast<uint2*>(dst) = make_uint2(Elem<T>::pack(a, b), Elem<T>::pack(c, d));
}

// ---- forward

// Keys per streamed tile: 32 at head dim 128 keeps the kernel within 255 registers.
template <int D>
constexpr int FwdKeys = D == 64 ? 64 : 32;

template <class T, int D>
__global__ void __launch_bounds__(kAttnThreads) forward_kernel(Problem p, Rows out, float* lse, int64_t ntiles) {
#ifdef FM_ATTN_MMA
  using E = typename Elem<T>::type;
  constexpr int W = FwdKeys<D>;
  using L = Smem<D, W, 1>;
  constexpr int LD = L::LD, LDS = L::LDS, LDP = L::LDP;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem + L::str);
  uint16_t* Vs = Ks + W * LD;
  float* S = reinterpret_cast<float*>(smem + L::s) + warp * 16 * LDS;
  uint16_t* P = reinterpret_cast<uint16_t*>(smem + L::p) + warp * 16 * LDP;
  float* stat = reinterpret_cast<float*>(smem + L::st) + warp * 16;

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t i0 = (ntiles - 1 - blockIdx.x % ntiles) * kRows;  // causal: the longest tiles start first
  const int nq = int(std::min<int64_t>(kRows, p.Tq - i0));
  load_tile<kRows, D>(Qs, p.q.row(bh, i0), p.q.ld, nq);

  // Row of each accumulator element: load a tile whose entries are their row.
  for (int idx = lane; idx < 256; idx += 32) S[(idx / 16) * LDS + idx % 16] = float(idx / 16);
  __syncwarp();
  int row_of[Acc::num_elements];
  {
    Acc t;
    wmma::load_matrix_sync(t, S, LDS, wmma::mem_row_major);
#pragma unroll
    for (int e = 0; e < Acc::num_elements; ++e) row_of[e] = int(t.x[e]);
  }
  __syncthreads();  // the Q tile is in; S is free again

  const E* Qw = reinterpret_cast<const E*>(Qs) + warp * 16 * LD;
  FragA<E> qf[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) wmma::load_matrix_sync(qf[kk], Qw + kk * 16, LD);
  Acc o[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(o[n], 0.0f);

  const int r = lane % 16, h = lane / 16;  // this lane's row and half of it
  const int64_t iw = i0 + warp * 16;       // the warp's first row
  const int64_t my_end = p.key_end(iw + r), warp_end = p.warp_key_end(iw);
  float m = -kInf, l = 0;  // running max (base 2) and sum of this lane's row

  const int64_t kend = p.key_end(i0 + nq - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += W) {
    const int nk = int(std::min<int64_t>(W, kend - j0));
    __syncthreads();  // the previous tile is consumed
    load_tile<W, D>(Ks, p.k.row(bh, j0), p.k.ld, nk);
    load_tile<W, D>(Vs, p.v.row(bh, j0), p.v.ld, nk);
    __syncthreads();
    if (j0 >= warp_end) continue;  // nothing visible to this warp's rows (causal, or rows past Tq)

    {  // S = Q K^T with Q from registers
      const E* Kt = reinterpret_cast<const E*>(Ks);
#pragma unroll
      for (int n = 0; n < W / 16; ++n) {
        Acc acc;
        wmma::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          FragBCol<E> b;
          wmma::load_matrix_sync(b, Kt + n * 16 * LD + kk * 16, LD);
          wmma::mma_sync(acc, qf[kk], b, acc);
        }
        wmma::store_matrix_sync(S + n * 16, acc, LDS, wmma::mem_row_major);
      }
    }
    __syncwarp();

    // Online softmax of row r: float4 number 2k + h of it is this lane's.
    const int vis = int(std::max<int64_t>(0, std::min<int64_t>(W, my_end - j0)));  // columns [0, vis) are visible
    float x[W / 2];
    float mx = -kInf;
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
      const int c = (2 * k + h) * 4;
      const float4 t = *reinterpret_cast<const float4*>(S + r * LDS + c);
      x[4 * k + 0] = c + 0 < vis ? t.x * p.scale_log2 : -kInf;
      x[4 * k + 1] = c + 1 < vis ? t.y * p.scale_log2 : -kInf;
      x[4 * k + 2] = c + 2 < vis ? t.z * p.scale_log2 : -kInf;
      x[4 * k + 3] = c + 3 < vis ? t.w * p.scale_log2 : -kInf;
#pragma unroll
      for (int e = 0; e < 4; ++e) mx = fmaxf(mx, x[4 * k + e]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
    const float mnew = fmaxf(m, mx);
    // A row with nothing visible yet subtracts 0, not -inf: its
    // probabilities are exp2(-inf) = 0 and no NaN appears.
    const float base = mnew == -kInf ? 0.0f : mnew;
    const float alpha = exp2f(m - base);  // 0 on the first visible tile
    float sum = 0;
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        x[4 * k + e] = exp2f(x[4 * k + e] - base);
        sum += x[4 * k + e];
      }
      put4<T>(P + r * LDP + (2 * k + h) * 4, x[4 * k], x[4 * k + 1], x[4 * k + 2], x[4 * k + 3]);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 16);
    l = l * alpha + sum;
    m = mnew;
    if (h == 0) stat[r] = alpha;
    __syncwarp();

    float a[Acc::num_elements];
#pragma unroll
    for (int e = 0; e < Acc::num_elements; ++e) a[e] = stat[row_of[e]];
#pragma unroll
    for (int n = 0; n < D / 16; ++n)
#pragma unroll
      for (int e = 0; e < Acc::num_elements; ++e) o[n].x[e] *= a[e];
    product_ab<E, W, D>(o, reinterpret_cast<const E*>(P), LDP, reinterpret_cast<const E*>(Vs), LD);
  }

  __syncwarp();  // stat and S are read above before they are rewritten here
  const bool any = l > 0.0f;
  if (h == 0) {
    stat[r] = any ? 1.0f / l : 0.0f;
    if (iw + r < p.Tq) lse[bh * p.Tq + iw + r] = any ? m * kLn2 + logf(l) : kInf;
  }
  __syncwarp();
  store_rows<T, D, W>(out, bh, iw, p.Tq, o, S, stat);
#else
  __trap();
#endif
}

// ---- backward

// delta[row] = dout[row] . out[row]; D / 8 lanes per row, 16 bytes each.
template <class T, int D>
__global__ void delta_kernel(Rows dout, Rows out, int64_t Tq, int64_t rows, float* delta) {
  constexpr int kLanes = D / 8;
  const int64_t row = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kLanes;
  const int seg = threadIdx.x % kLanes;
  float s = 0;
  if (row < rows) {
    const uint4 a = *reinterpret_cast<const uint4*>(dout.row(row / Tq, row % Tq) + seg * 8);
    const uint4 b = *reinterpret_cast<const uint4*>(out.row(row / Tq, row % Tq) + seg * 8);
    const uint32_t av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 x = Elem<T>::unpack(av[e]), y = Elem<T>::unpack(bv[e]);
      s += x.x * y.x + x.y * y.y;
    }
  }
#pragma unroll
  for (int o = kLanes / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (row < rows && seg == 0) delta[row] = s;
}

// dk, dv of one tile of 64 keys (16 per warp) against every query tile of W
// rows that sees it. The warp's tiles are keys x queries: S^T = K Q^T and
// dP^T = V dO^T, then dV += P^T dO and dK += dS^T Q.
template <class T, int D, int W>
__global__ void __launch_bounds__(kAttnThreads) dkdv_kernel(Problem p, Grads g, int64_t ntiles) {
#ifdef FM_ATTN_MMA
  using E = typename Elem<T>::type;
  using L = Smem<D, W, 2>;
  constexpr int LD = L::LD, LDS = L::LDS, LDP = L::LDP;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem);
  uint16_t* Vs = Ks + kRows * LD;
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem + L::str);
  uint16_t* dOs = Qs + W * LD;
  float* S = reinterpret_cast<float*>(smem + L::s) + warp * 16 * LDS;
  uint16_t* P = reinterpret_cast<uint16_t*>(smem + L::p) + warp * 16 * LDP;
  float* lse2 = reinterpret_cast<float*>(smem + L::st);  // [W], base 2
  float* delta = lse2 + 64;                               // [W]

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t j0 = (blockIdx.x % ntiles) * kRows;  // causal: low key tiles see the most queries, start first
  const int nk = int(std::min<int64_t>(kRows, p.Tk - j0));
  load_tile<kRows, D>(Ks, p.k.row(bh, j0), p.k.ld, nk);
  load_tile<kRows, D>(Vs, p.v.row(bh, j0), p.v.ld, nk);
  const E* Kw = reinterpret_cast<const E*>(Ks) + warp * 16 * LD;
  const E* Vw = reinterpret_cast<const E*>(Vs) + warp * 16 * LD;
  Acc dk[D / 16], dv[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dk[n], 0.0f), wmma::fill_fragment(dv[n], 0.0f);

  const int r = lane % 16, h = lane / 16;  // this lane's key and half of its row
  const int64_t jw = j0 + warp * 16, j = jw + r;
  // Under the causal rule, query i sees key j once i >= j - (Tk - Tq).
  const int64_t first = p.causal ? std::max<int64_t>(0, j0 - (p.Tk - p.Tq)) : 0;
  for (int64_t i0 = first; i0 < p.Tq; i0 += W) {
    const int nq = int(std::min<int64_t>(W, p.Tq - i0));
    __syncthreads();
    load_tile<W, D>(Qs, p.q.row(bh, i0), p.q.ld, nq);
    load_tile<W, D>(dOs, g.dout.row(bh, i0), g.dout.ld, nq);
    if (threadIdx.x < W) {  // rows past the end get P = 0 (lse = inf) and delta 0
      const int c = threadIdx.x;
      lse2[c] = c < nq ? g.lse[bh * p.Tq + i0 + c] * kLog2e : kInf;
      delta[c] = c < nq ? g.delta[bh * p.Tq + i0 + c] : 0.0f;
    }
    __syncthreads();
    // Skip when no key of the warp is visible to any query of the tile.
    if (jw >= p.Tk || (p.causal && jw > i0 + nq - 1 + (p.Tk - p.Tq))) continue;

    product_abt<E, W, D>(S, LDS, Kw, LD, reinterpret_cast<const E*>(Qs), LD);
    __syncwarp();
    // Queries [lo, nq) of the tile see key j (none if j is padding).
    const int lo = j >= p.Tk ? W
                   : p.causal ? int(std::max<int64_t>(0, std::min<int64_t>(W, j - (p.Tk - p.Tq) - i0)))
                              : 0;
    const int hi = j >= p.Tk ? 0 : nq;
    float pt[W / 2];
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
      const int c = (2 * k + h) * 4;
      const float4 t = *reinterpret_cast<const float4*>(S + r * LDS + c);
      const float4 L2 = *reinterpret_cast<const float4*>(lse2 + c);
      const float sv[4] = {t.x, t.y, t.z, t.w}, lv[4] = {L2.x, L2.y, L2.z, L2.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        // A row that sees no key has lse = +inf, so P = exp2(-inf) = 0.
        const bool seen = c + e >= lo && c + e < hi;
        pt[4 * k + e] = seen ? exp2f(sv[e] * p.scale_log2 - lv[e]) : 0.0f;
      }
      put4<T>(P + r * LDP + c, pt[4 * k], pt[4 * k + 1], pt[4 * k + 2], pt[4 * k + 3]);
    }
    __syncwarp();
    product_ab<E, W, D>(dv, reinterpret_cast<const E*>(P), LDP, reinterpret_cast<const E*>(dOs), LD);
    product_abt<E, W, D>(S, LDS, Vw, LD, reinterpret_cast<const E*>(dOs), LD);  // dP^T
    __syncwarp();  // dP^T is in S, and every lane is done reading P
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
      const int c = (2 * k + h) * 4;
      const float4 t = *reinterpret_cast<const float4*>(S + r * LDS + c);
      const float4 dl = *reinterpret_cast<const float4*>(delta + c);
      put4<T>(P + r * LDP + c, p.scale * pt[4 * k] * (t.x - dl.x), p.scale * pt[4 * k + 1] * (t.y - dl.y),
              p.scale * pt[4 * k + 2] * (t.z - dl.z), p.scale * pt[4 * k + 3] * (t.w - dl.w));
    }
    __syncwarp();
    product_ab<E, W, D>(dk, reinterpret_cast<const E*>(P), LDP, reinterpret_cast<const E*>(Qs), LD);
  }

  // Zeros where no query sees a key.
  store_rows<T, D, W>(g.dk, bh, jw, p.Tk, dk, S, nullptr);
  store_rows<T, D, W>(g.dv, bh, jw, p.Tk, dv, S, nullptr);
#else
  __trap();
#endif
}

// dq of one tile of 64 queries (16 per warp): recomputes P and dS over the
// visible key tiles of W keys; dQ += dS K.
template <class T, int D, int W>
__global__ void __launch_bounds__(kAttnThreads) dq_kernel(Problem p, Grads g, int64_t ntiles) {
#ifdef FM_ATTN_MMA
  using E = typename Elem<T>::type;
  using L = Smem<D, W, 2>;
  constexpr int LD = L::LD, LDS = L::LDS, LDP = L::LDP;
  extern __shared__ __align__(128) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint16_t* Qs = reinterpret_cast<uint16_t*>(smem);
  uint16_t* dOs = Qs + kRows * LD;
  uint16_t* Ks = reinterpret_cast<uint16_t*>(smem + L::str);
  uint16_t* Vs = Ks + W * LD;
  float* S = reinterpret_cast<float*>(smem + L::s) + warp * 16 * LDS;
  uint16_t* P = reinterpret_cast<uint16_t*>(smem + L::p) + warp * 16 * LDP;

  const int64_t bh = blockIdx.x / ntiles;
  const int64_t i0 = (ntiles - 1 - blockIdx.x % ntiles) * kRows;
  const int nq = int(std::min<int64_t>(kRows, p.Tq - i0));
  load_tile<kRows, D>(Qs, p.q.row(bh, i0), p.q.ld, nq);
  load_tile<kRows, D>(dOs, g.dout.row(bh, i0), g.dout.ld, nq);
  const E* Qw = reinterpret_cast<const E*>(Qs) + warp * 16 * LD;
  const E* dOw = reinterpret_cast<const E*>(dOs) + warp * 16 * LD;
  Acc dq[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dq[n], 0.0f);

  const int r = lane % 16, h = lane / 16;
  const int64_t iw = i0 + warp * 16, i = iw + r;
  const int64_t my_end = p.key_end(i), warp_end = p.warp_key_end(iw);
  const float lse2 = i < p.Tq ? g.lse[bh * p.Tq + i] * kLog2e : kInf;
  const float delta = i < p.Tq ? g.delta[bh * p.Tq + i] : 0.0f;

  const int64_t kend = p.key_end(i0 + nq - 1);
  for (int64_t j0 = 0; j0 < kend; j0 += W) {
    const int nk = int(std::min<int64_t>(W, kend - j0));
    __syncthreads();
    load_tile<W, D>(Ks, p.k.row(bh, j0), p.k.ld, nk);
    load_tile<W, D>(Vs, p.v.row(bh, j0), p.v.ld, nk);
    __syncthreads();
    if (j0 >= warp_end) continue;

    product_abt<E, W, D>(S, LDS, Qw, LD, reinterpret_cast<const E*>(Ks), LD);
    __syncwarp();
    const int vis = int(std::max<int64_t>(0, std::min<int64_t>(W, my_end - j0)));
    float pr[W / 2];
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
      const int c = (2 * k + h) * 4;
      const float4 t = *reinterpret_cast<const float4*>(S + r * LDS + c);
      const float sv[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) pr[4 * k + e] = c + e < vis ? exp2f(sv[e] * p.scale_log2 - lse2) : 0.0f;
    }
    __syncwarp();  // every lane has read S before dP overwrites it
    product_abt<E, W, D>(S, LDS, dOw, LD, reinterpret_cast<const E*>(Vs), LD);  // dP
    __syncwarp();
#pragma unroll
    for (int k = 0; k < W / 8; ++k) {
      const int c = (2 * k + h) * 4;
      const float4 t = *reinterpret_cast<const float4*>(S + r * LDS + c);
      put4<T>(P + r * LDP + c, p.scale * pr[4 * k] * (t.x - delta), p.scale * pr[4 * k + 1] * (t.y - delta),
              p.scale * pr[4 * k + 2] * (t.z - delta), p.scale * pr[4 * k + 3] * (t.w - delta));
    }
    __syncwarp();
    product_ab<E, W, D>(dq, reinterpret_cast<const E*>(P), LDP, reinterpret_cast<const E*>(Ks), LD);
  }

  __syncwarp();
  store_rows<T, D, W>(g.dq, bh, iw, p.Tq, dq, S, nullptr);
#else
  __trap();
#endif
}

// ---- host side

// Whether the kernels built for the current device run tensor-core code
// (sm_80 or newer); cached per device.
bool arch_ok() {
  static std::atomic<int8_t> known[64] = {};  // 0 unknown, 1 yes, -1 no
  int dev = 0;
  FM_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 64 && known[dev].load(std::memory_order_relaxed) != 0) return known[dev].load() > 0;
  cudaFuncAttributes attr{};
  const bool ok = cudaFuncGetAttributes(&attr, delta_kernel<bf16, 64>) == cudaSuccess && attr.ptxVersion >= 80 &&
                  attr.binaryVersion >= 80;
  if (!ok) (void)cudaGetLastError();  // a failed query leaves no sticky error behind
  if (dev < 64) known[dev].store(ok ? 1 : -1);
  return ok;
}

// The cases this path takes; the tensors it reads or writes as [B,H,T,D].
bool supported(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
               std::initializer_list<const Tensor*> rows) {
  if (mask.defined()) return false;
  if (q.dtype() != DType::bf16 && q.dtype() != DType::f16) return false;
  for (const Tensor* t : rows)
    if (t->dtype() != q.dtype()) return false;
  const int64_t D = q.size(3);
  if ((D != 64 && D != 128) || k.size(3) != D || v.size(3) != D) return false;
  if (q.size(0) * q.size(1) == 0 || q.size(2) == 0 || k.size(2) == 0) return false;  // SIMT handles empty cases
  for (const Tensor* t : rows)
    if (!vector_rows(*t) || t->size(3) != D) return false;
  const int64_t tiles = (std::max(q.size(2), k.size(2)) + kRows - 1) / kRows;
  if (q.size(0) * q.size(1) * tiles > int64_t(std::numeric_limits<int>::max())) return false;
  return arch_ok();
}

Problem problem(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  Problem p;
  p.q = rows_of(q);
  p.k = rows_of(k);
  p.v = rows_of(v);
  p.Tq = q.size(2);
  p.Tk = k.size(2);
  p.causal = causal;
  p.scale = float(scale);
  p.scale_log2 = float(scale * 1.4426950408889634);
  return p;
}

// Calls f(T{}, integral_constant<D>) for the dtype and head dim.
template <class F>
void dispatch(DType t, int64_t D, F&& f) {
  auto with_d = [&](auto tag) {
    if (D == 64) f(tag, std::integral_constant<int, 64>{});
    else f(tag, std::integral_constant<int, 128>{});
  };
  if (t == DType::bf16) with_d(bf16{});
  else with_d(f16{});
}

template <class K>
void launch_setup(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    FM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace

bool attention_mma_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                           const Tensor& mask, bool causal, double scale) {
  if (!supported(q, k, v, mask, {&q, &k, &v, &out})) return false;
  const Problem p = problem(q, k, v, causal, scale);
  const int64_t BH = q.size(0) * q.size(1), ntiles = (p.Tq + kRows - 1) / kRows;
  dispatch(q.dtype(), q.size(3), [&](auto tag, auto d) {
    using T = decltype(tag);
    constexpr int D = decltype(d)::value;
    constexpr size_t bytes = Smem<D, FwdKeys<D>, 1>::bytes;
    auto kernel = forward_kernel<T, D>;
    launch_setup(kernel, bytes);
    float* l = static_cast<float*>(lse.data_ptr());
    kernel<<<unsigned(BH * ntiles), kAttnThreads, bytes, stream()>>>(p, rows_of(out), l, ntiles);
    check_launch();
  });
  return true;
}

bool attention_mma_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                            const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                            const Tensor& mask, bool causal, double scale) {
  if (!supported(q, k, v, mask, {&q, &k, &v, &out, &dout, &dq, &dk, &dv})) return false;
  const Problem p = problem(q, k, v, causal, scale);
  const int64_t BH = q.size(0) * q.size(1), rows = BH * p.Tq;
  const Tensor delta = make_tensor({rows}, DType::f32, q.device());
  const Grads g{rows_of(dout), rows_of(dq), rows_of(dk), rows_of(dv), static_cast<const float*>(lse.data_ptr()),
                static_cast<const float*>(delta.data_ptr())};
  dispatch(q.dtype(), q.size(3), [&](auto tag, auto d) {
    using T = decltype(tag);
    constexpr int D = decltype(d)::value;
    constexpr int W = D == 64 ? 64 : 32;  // streamed rows: keeps D = 128 within registers
    constexpr int kBlock = 256, per_block = kBlock / (D / 8);
    delta_kernel<T, D><<<unsigned((rows + per_block - 1) / per_block), kBlock, 0, stream()>>>(
        g.dout, rows_of(out), p.Tq, rows, static_cast<float*>(delta.data_ptr()));
    check_launch();

    constexpr size_t bytes = Smem<D, W, 2>::bytes;
    auto dkdv = dkdv_kernel<T, D, W>;
    launch_setup(dkdv, bytes);
    const int64_t ktiles = (p.Tk + kRows - 1) / kRows;
    dkdv<<<unsigned(BH * ktiles), kAttnThreads, bytes, stream()>>>(p, g, ktiles);
    check_launch();
    auto dqk = dq_kernel<T, D, W>;
    launch_setup(dqk, bytes);
    const int64_t qtiles = (p.Tq + kRows - 1) / kRows;
    dqk<<<unsigned(BH * qtiles), kAttnThreads, bytes, stream()>>>(p, g, qtiles);
    check_launch();
  });
  // `delta` goes back to the caching allocator here; the kernels reading it
  // run before any later user of the current stream.
  return true;
}

}  // namespace fm::cuda

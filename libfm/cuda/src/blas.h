#pragma once
// cuBLASLt plumbing shared by the gemm slot and the fused linear epilogues:
// one handle per device, one workspace per (device, stream), and a cache of
// matmul plans (descriptor, layouts, chosen algorithm) so a training step
// repeats no heuristic query. Everything here speaks cuBLASLt's column-major
// language; callers map their row-major problems onto it.
#include <cublasLt.h>

#include <cstdint>
#include <functional>
#include <string>

#include "fm/dtype.h"

namespace fm::cuda::blas {

// A stored (column-major, untransposed) matrix: rows x cols, column stride ld,
// `batch_stride` elements between batches.
struct Layout {
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0, batch_stride = 0;
  bool operator==(const Layout&) const = default;
};

// Everything cuBLASLt's heuristic looks at: it is the plan cache's key.
// D = epilogue(alpha * op_a(A) @ op_b(B) + beta * C), D = C in place.
struct Problem {
  DType dtype = DType::f32;  // of A, B, C, D, the bias and the aux matrix
  bool trans_a = false, trans_b = false;
  Layout a, b, c;
  int32_t batch = 1;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  int64_t aux_ld = 0;  // GELU aux matrix (same shape as D), column stride
  // Pointer alignments in bytes (powers of two up to 256), folded with the
  // ld and batch strides: the algorithm chosen must suit the actual buffers.
  uint32_t align_a = 256, align_b = 256, align_c = 256, align_bias = 256, align_aux = 256;
  bool tf32 = false;  // f32 only: CUBLAS_COMPUTE_32F_FAST_TF32
  int device = 0;
  bool operator==(const Problem&) const = default;
};

struct Operands {
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;  // read when beta != 0, always written
  void* bias = nullptr;  // bias (read) or bias gradient (written), per the epilogue
  void* aux = nullptr;   // GELU input: written by GELU_AUX_BIAS, read by DGELU
  double alpha = 1.0, beta = 0.0;
};

// Largest power of two (<= 256) dividing the address and every byte stride given.
uint32_t alignment(const void* p, std::initializer_list<int64_t> byte_strides);

// Runs the product on the current stream. `what` names the shapes for errors
// (called only when something fails).
void matmul(const Problem& p, const Operands& ops, const std::function<std::string()>& what);

}  // namespace fm::cuda::blas

#pragma once
// The CUDA backend's GEMM controls and the fused linear-layer GEMMs built on
// cuBLASLt epilogues (bias, GELU and their gradients folded into the product,
// saving a pass over the activations each).
//
// Matrices are 2-D CUDA tensors of one floating dtype, row-major with a unit
// column stride or the transpose of such a view (x2d, weight, dout); outputs
// and the GELU input have a unit column stride; bias vectors are contiguous.
// GELU is the tanh approximation. An epilogue cuBLASLt cannot run for the
// given dtype or alignment raises fm::Error naming the shapes.
#include <cstdint>

#include "fm/tensor.h"

namespace fm::cuda {

// f32 GEMMs may use TF32 tensor cores (inputs rounded to 10-bit mantissas,
// f32 accumulation). Off by default: f32 results then match the CPU closely.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Whether the first product of each shape times cuBLASLt's top heuristic
// candidates on its operands and keeps the fastest (on by default; the
// environment's FM_CUDA_GEMM_AUTOTUNE=0 turns it off). The choice is made per
// process, so results may differ in the last bits between runs with it on;
// off, every run takes the heuristic's first algorithm.
void set_gemm_autotune(bool on);
bool gemm_autotune();

enum class Epilogue : uint8_t {
  bias,       // out = x @ W^T + b
  bias_gelu,  // out = gelu(x @ W^T + b); pre_gelu (if defined) receives x @ W^T + b
};

// Linear forward in one GEMM. out, pre_gelu [M, N]; x2d [M, K]; weight [N, K];
// bias [N] or undefined (then no bias is added). pre_gelu's row stride must be
// a multiple of 8 elements (cuBLASLt's rule for the aux matrix).
void linear_epilogue(const Tensor& out, const Tensor& x2d, const Tensor& weight, const Tensor& bias, Epilogue e,
                     const Tensor& pre_gelu = {});

// Linear backward, weight side: dweight [N, K] = dout [M, N]^T @ x2d [M, K]
// (+= when accumulate), and dbias [N] (if defined) = the column sums of dout,
// from the same GEMM. dbias is always overwritten.
void linear_backward_weight(const Tensor& dweight, const Tensor& dbias, const Tensor& dout, const Tensor& x2d,
                            bool accumulate = false);

// Linear backward, input side through the previous layer's GELU:
// dpre [M, K] = (dout [M, N] @ weight [N, K]) * gelu'(pre_gelu [M, K]), and
// dbias [K] (if defined) = the column sums of dpre, i.e. the gradient of the
// bias that produced pre_gelu. pre_gelu's row stride must be a multiple of 8.
void linear_backward_gelu_input(const Tensor& dpre, const Tensor& dbias, const Tensor& dout, const Tensor& weight,
                                const Tensor& pre_gelu);

}  // namespace fm::cuda

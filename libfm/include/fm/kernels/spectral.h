#pragma once
// Kernel slots of the real discrete Fourier transform. Tensors are contiguous
// f32 or f64 (op code computes bf16/f16 in f32); complex values are pairs
// (real, imaginary) in a trailing dim of 2, as torch.view_as_real lays them out.
// The CPU entries need FFmpeg's libavutil (its av_tx FFT); libfm built without
// it leaves them empty and the ops say so.
#include "fm/kernels/kernel.h"
#include "fm/tensor.h"

namespace fm::kernels {

// X [M, n/2 + 1, 2] = the DFT of each row of x [M, n]: X_k = sum_j x_j e^(-2 pi i jk/n).
extern Kernel<void(const Tensor& X, const Tensor& x)> rfft;
// x [M, n] = the inverse of rfft, scaled by 1/n, from X [M, n/2 + 1, 2]: the
// spectrum is taken as Hermitian, so the imaginary parts of the DC bin (and of
// the Nyquist bin for even n) are ignored, as numpy's and torch's irfft do.
extern Kernel<void(const Tensor& x, const Tensor& X)> irfft;

}  // namespace fm::kernels

#pragma once
// The real discrete Fourier transform along the last dim, as torch.fft.rfft
// and irfft with norm "backward", complex values as (real, imaginary) pairs in
// a trailing dim of 2 (torch.view_as_real's layout). Differentiable both ways.
// FFmpeg's FFT on the CPU, cuFFT on CUDA; bf16/f16 compute in f32. STFT, mel
// features and Griffin-Lim build on these (fm/audio/spectral.h).
#include "fm/tensor.h"

namespace fm {

// x [..., n] real -> [..., n / 2 + 1, 2].
Tensor rfft(const Tensor& x);
// X [..., n / 2 + 1, 2] -> [..., n] real; the imaginary parts of the DC bin
// (and the Nyquist bin of an even n) are ignored, as a Hermitian spectrum has none.
Tensor irfft(const Tensor& X, int64_t n);

}  // namespace fm

#pragma once
// Kernel slots of convolution, pooling and upsampling. Conventions as in
// fm/kernels/core.h: outputs first, allocated by the caller. Every tensor
// here is contiguous NCHW and f32 or f64 (op code computes bf16/f16 in f32),
// except in the direct convolutions. Convolutions are im2col + the batched
// GEMM slot, so only the column shuffles are per backend, unless the backend
// fills the direct convolution slots (a library's, e.g. cuDNN).
#include <cmath>
#include <cstdint>

#include "fm/host_device.h"
#include "fm/kernels/kernel.h"
#include "fm/tensor.h"

namespace fm::kernels {

// The sizes of one convolution: x [N, channels, in_h, in_w] to output
// positions [out_h, out_w]. Output position o reads input o * stride - pad +
// k * dilation for each kernel tap k.
struct ConvGeometry {
  int64_t channels = 0;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
};

// cols [N, channels * kernel_h * kernel_w, out_h * out_w] from x: row
// (c, kh, kw) holds the input each output position sees through that tap
// (0 in the padding).
extern Kernel<void(const ConvGeometry& g, const Tensor& cols, const Tensor& x)> im2col;
// x += the columns scattered back to the input positions they were read
// from (the adjoint of im2col).
extern Kernel<void(const ConvGeometry& g, const Tensor& x, const Tensor& cols)> col2im;

// ---- direct 2-D convolutions: optional, no CPU entry (op code uses them when
// a backend fills all three). x [N, C, H, W], w [K, C/groups, KH, KW],
// y [N, K, OH, OW] with OH = (H + 2 pad_h - dilation_h (KH - 1) - 1) / stride_h + 1
// exactly (likewise OW); contiguous, all of one dtype: f32, bf16 or f16
// (the half types accumulate in f32).
struct ConvParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  bool accumulate = false;  // add to the output instead of overwriting it
};
// y = conv(x, w).
extern Kernel<void(const ConvParams& p, const Tensor& y, const Tensor& x, const Tensor& w)> conv2d_forward;
// dx = the gradient of conv(x, w) in x, from dy (the adjoint of the forward).
extern Kernel<void(const ConvParams& p, const Tensor& dx, const Tensor& dy, const Tensor& w)> conv2d_backward_data;
// dw = the gradient of conv(x, w) in w, from x and dy (summed over the batch).
extern Kernel<void(const ConvParams& p, const Tensor& dw, const Tensor& x, const Tensor& dy)> conv2d_backward_filter;

// Square windows; padding counts as zeros in the average (count_include_pad).
struct PoolGeometry {
  int64_t kernel = 1, stride = 1, padding = 0;
};
// out [N, C, OH, OW] = window averages of x [N, C, H, W].
extern Kernel<void(const PoolGeometry& g, const Tensor& out, const Tensor& x)> avg_pool2d_forward;
// dx [N, C, H, W] (overwritten) from dy [N, C, OH, OW].
extern Kernel<void(const PoolGeometry& g, const Tensor& dx, const Tensor& dy)> avg_pool2d_backward;

enum class UpsampleMode : uint8_t { nearest, bilinear };
// out [N, C, OH, OW] resized from x [N, C, H, W].
extern Kernel<void(UpsampleMode mode, const Tensor& out, const Tensor& x)> upsample_forward;
// dx [N, C, H, W] (overwritten) from dy [N, C, OH, OW].
extern Kernel<void(UpsampleMode mode, const Tensor& dx, const Tensor& dy)> upsample_backward;

// The sizes of one plane of x [.., H, W] and of the pooled or resized
// y [.., OH, OW], as the pooling and upsampling kernels of every backend walk them.
struct Planes {
  int64_t count, h, w, out_h, out_w;
};
inline Planes planes_of(const Tensor& x, const Tensor& y) {
  return {x.size(0) * x.size(1), x.size(2), x.size(3), y.size(2), y.size(3)};
}

// ---- source-index rules, shared by the backends (PyTorch's, align_corners = false)

// Nearest: floor(dst * in / out) computed in f32 as PyTorch does, which
// moves some exact ties down (in 2, out 82, dst 41 reads 0, not 1).
FM_HOST_DEVICE int64_t nearest_source(int64_t dst, int64_t in, int64_t out) {
  if (out == in) return dst;
  if (out == 2 * in) return dst >> 1;
  const float scale = float(in) / float(out);
  const int64_t src = int64_t(std::floor(float(dst) * scale));
  return src < in - 1 ? src : in - 1;
}

// Bilinear along one axis: dst reads (1 - w1) * x[i0] + w1 * x[i1], in the
// data's type T (f32 or f64), as PyTorch.
template <class T>
struct LinearTap {
  int64_t i0, i1;
  T w1;
};
template <class T>
FM_HOST_DEVICE LinearTap<T> linear_source(int64_t dst, int64_t in, int64_t out) {
  const T scale = T(in) / T(out);
  T src = (T(dst) + T(0.5)) * scale - T(0.5);
  if (src < T(0)) src = T(0);
  int64_t i0 = int64_t(src);  // floor: src >= 0
  if (i0 > in - 1) i0 = in - 1;
  T w1 = src - T(i0);
  if (w1 > T(1)) w1 = T(1);
  return {i0, i0 < in - 1 ? i0 + 1 : i0, w1};
}

}  // namespace fm::kernels

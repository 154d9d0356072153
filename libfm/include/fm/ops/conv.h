#pragma once
// Convolutions, pooling and upsampling (NCL / NCHW layouts as PyTorch).
// Floating inputs of mixed dtypes promote; bf16/f16 compute in f32 and return
// their own dtype. Inputs may be strided views.
#include <string>

#include "fm/tensor.h"

namespace fm {

struct Conv1dArgs {
  int64_t stride = 1, padding = 0, dilation = 1, groups = 1;
  int64_t output_padding = 0;  // transposed convolution only
};
struct Conv2dArgs {
  int64_t stride[2] = {1, 1}, padding[2] = {0, 0}, dilation[2] = {1, 1};
  int64_t groups = 1;
  int64_t output_padding[2] = {0, 0};  // transposed convolution only
};

// x [N, Cin, L], weight [Cout, Cin/groups, K], bias [Cout] optional.
// Output length (L + 2 * padding - dilation * (K - 1) - 1) / stride + 1.
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv1dArgs& args = {});
// x [N, Cin, H, W], weight [Cout, Cin/groups, KH, KW].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dArgs& args = {});
// weight [Cin, Cout/groups, K...] as PyTorch's ConvTranspose, bias [Cout].
// Output size (L - 1) * stride - 2 * padding + dilation * (K - 1) +
// output_padding + 1, output_padding smaller than stride or dilation.
Tensor conv_transpose1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const Conv1dArgs& args = {});
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const Conv2dArgs& args = {});

// Square windows; padding (at most kernel / 2) counts as zeros in the
// average (count_include_pad = true, ceil_mode = false).
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0 /* = kernel */, int64_t padding = 0);
// x [N, C, H, W] -> [N, C, out_h, out_w]; mode "nearest" or "bilinear"
// (align_corners = false, as PyTorch's default). Nearest reads source index
// floor(dst * in / out), with PyTorch's f32 scale.
Tensor upsample(const Tensor& x, int64_t out_h, int64_t out_w, const std::string& mode = "nearest");

}  // namespace fm

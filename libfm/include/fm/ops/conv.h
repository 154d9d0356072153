#pragma once
// Convolutions, pooling and upsampling (NCL / NCHW layouts as PyTorch).
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
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv1dArgs& args = {});
// x [N, Cin, H, W], weight [Cout, Cin/groups, KH, KW].
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dArgs& args = {});
// weight [Cin, Cout/groups, K...] as PyTorch's ConvTranspose.
Tensor conv_transpose1d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const Conv1dArgs& args = {});
Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
                        const Conv2dArgs& args = {});

// Padding counts as zeros in the average (count_include_pad = true).
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0 /* = kernel */, int64_t padding = 0);
// x [N, C, H, W] -> [N, C, out_h, out_w]; mode "nearest" or "bilinear"
// (align_corners = false, as PyTorch's default).
Tensor upsample(const Tensor& x, int64_t out_h, int64_t out_w, const std::string& mode = "nearest");

}  // namespace fm

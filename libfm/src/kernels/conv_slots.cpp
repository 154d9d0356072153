// The convolution, pooling and upsampling kernel slots (fm/kernels/conv.h).
#include "fm/kernels/conv.h"

namespace fm::kernels {

constinit Kernel<void(const ConvGeometry&, const Tensor&, const Tensor&)> im2col{"im2col"};
constinit Kernel<void(const ConvGeometry&, const Tensor&, const Tensor&)> col2im{"col2im"};
constinit Kernel<void(const ConvParams&, const Tensor&, const Tensor&, const Tensor&)> conv2d_forward{
    "conv2d_forward"};
constinit Kernel<void(const ConvParams&, const Tensor&, const Tensor&, const Tensor&)> conv2d_backward_data{
    "conv2d_backward_data"};
constinit Kernel<void(const ConvParams&, const Tensor&, const Tensor&, const Tensor&)> conv2d_backward_filter{
    "conv2d_backward_filter"};
constinit Kernel<void(const PoolGeometry&, const Tensor&, const Tensor&)> avg_pool2d_forward{"avg_pool2d_forward"};
constinit Kernel<void(const PoolGeometry&, const Tensor&, const Tensor&)> avg_pool2d_backward{"avg_pool2d_backward"};
constinit Kernel<void(UpsampleMode, const Tensor&, const Tensor&)> upsample_forward{"upsample_forward"};
constinit Kernel<void(UpsampleMode, const Tensor&, const Tensor&)> upsample_backward{"upsample_backward"};

}  // namespace fm::kernels

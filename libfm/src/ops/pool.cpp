// Average pooling and upsampling: argument checks and autograd; the loops are
// the backends' (fm/kernels/conv.h).
#include "fm/autograd.h"
#include "fm/kernels/conv.h"
#include "fm/ops/conv.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

// The kernels compute in f64 or f32 (bf16/f16 go through f32); contiguous.
DType compute_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }
Tensor prepared(const Tensor& x) {
  const DType c = compute_dtype(x.dtype());
  return (x.dtype() == c ? x : x.to(c)).contiguous();
}

void check_image(const char* op, const Tensor& x) {
  if (!x.defined() || x.dim() != 4) error(op, ": input must be [N, C, H, W], got ", x.defined() ? x.shape() : Shape{});
  if (!is_floating(x.dtype())) error(op, ": needs a floating tensor, got ", x.dtype());
}

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

}  // namespace

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_image("avg_pool2d", x);
  if (stride == 0) stride = kernel;
  if (kernel < 1 || stride < 1) error("avg_pool2d: kernel ", kernel, " and stride ", stride, " must be positive");
  if (padding < 0 || 2 * padding > kernel)
    error("avg_pool2d: padding ", padding, " must be between 0 and half the kernel ", kernel);
  const int64_t out_h = floor_div(x.size(2) + 2 * padding - kernel, stride) + 1;
  const int64_t out_w = floor_div(x.size(3) + 2 * padding - kernel, stride) + 1;
  if (out_h <= 0 || out_w <= 0)
    error("avg_pool2d: input ", x.shape(), " with padding ", padding, " is too small for kernel ", kernel,
          ": output size would be [", out_h, ",", out_w, "]");

  const kernels::PoolGeometry g{kernel, stride, padding};
  Tensor xc = prepared(x);
  Tensor y = make_tensor({x.size(0), x.size(1), out_h, out_w}, xc.dtype(), x.device());
  kernels::avg_pool2d_forward(x.device(), g, y, xc);
  if (any_requires_grad({xc}))
    record("avg_pool2d", y, {xc}, [g, shape = xc.shape()](const Tensor& grad, const Node&) {
      Tensor dx = make_tensor(shape, grad.dtype(), grad.device());
      kernels::avg_pool2d_backward(grad.device(), g, dx, grad.contiguous());
      return Grads{dx};
    });
  return y.dtype() == x.dtype() ? y : y.to(x.dtype());
}

Tensor upsample(const Tensor& x, int64_t out_h, int64_t out_w, const std::string& mode) {
  check_image("upsample", x);
  kernels::UpsampleMode m = kernels::UpsampleMode::nearest;
  if (mode == "bilinear") m = kernels::UpsampleMode::bilinear;
  else if (mode != "nearest") error("upsample: mode must be 'nearest' or 'bilinear', got '", mode, "'");
  if (out_h < 1 || out_w < 1) error("upsample: output size [", out_h, ",", out_w, "] must be positive");
  if (x.size(2) < 1 || x.size(3) < 1) error("upsample: input ", x.shape(), " has no pixels to resize");

  Tensor xc = prepared(x);
  Tensor y = make_tensor({x.size(0), x.size(1), out_h, out_w}, xc.dtype(), x.device());
  kernels::upsample_forward(x.device(), m, y, xc);
  if (any_requires_grad({xc}))
    record("upsample", y, {xc}, [m, shape = xc.shape()](const Tensor& grad, const Node&) {
      Tensor dx = make_tensor(shape, grad.dtype(), grad.device());
      kernels::upsample_backward(grad.device(), m, dx, grad.contiguous());
      return Grads{dx};
    });
  return y.dtype() == x.dtype() ? y : y.to(x.dtype());
}

}  // namespace fm

// Convolutions as im2col + batched GEMM, device independent: backends supply
// im2col, col2im and the GEMM. Three primitives do all the work: the forward
// product, its adjoint in the input (GEMM then col2im) and the weight
// gradient. A transposed convolution is the adjoint of a convolution, so its
// forward is the input adjoint and its backward the forward product. 1-D
// convolutions run as 2-D ones of height 1. Backends with a library
// convolution (cuDNN) fill the direct slots, which then replace the three
// primitives, taking bf16/f16 as they are.
#include "fm/ops/conv.h"

#include <algorithm>
#include <sstream>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/conv.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;
using kernels::ConvGeometry;

// A convolution in 2-D form. For a transposed convolution, `geom` is the
// convolution it is the adjoint of (whose input is the transposed output).
struct ConvPlan {
  const char* op;
  ConvGeometry geom;
  int64_t groups = 1;
  bool direct = false;  // through the direct convolution slots
};

kernels::ConvParams direct_params(const ConvPlan& p, bool accumulate) {
  const ConvGeometry& g = p.geom;
  kernels::ConvParams r;
  r.stride_h = g.stride_h, r.stride_w = g.stride_w, r.pad_h = g.pad_h, r.pad_w = g.pad_w;
  r.dilation_h = g.dilation_h, r.dilation_w = g.dilation_w;
  r.groups = p.groups;
  r.accumulate = accumulate;
  return r;
}

// The direct slots take one dtype; a gradient may arrive in another.
Tensor as_dtype_of(const Tensor& t, const Tensor& like) {
  return t.dtype() == like.dtype() ? t : t.to(like.dtype()).contiguous();
}

// Bound on the column buffer, in elements: larger batches go in chunks.
constexpr int64_t kMaxBufferElements = int64_t(1) << 25;

int64_t images_per_chunk(int64_t batch, int64_t elements_per_image) {
  return std::clamp<int64_t>(kMaxBufferElements / std::max<int64_t>(elements_per_image, 1), 1,
                             std::max<int64_t>(batch, 1));
}

int64_t column_rows(const ConvGeometry& g) { return g.channels * g.kernel_h * g.kernel_w; }
int64_t positions(const ConvGeometry& g) { return g.out_h * g.out_w; }

// A new output holding the bias per channel; without a bias, zeros when
// `fill_zero`, else uninitialised (the caller's GEMM overwrites it).
Tensor output_with_bias(const Shape& shape, const Tensor& like, const Tensor& bias, bool fill_zero) {
  Tensor out = make_tensor(shape, like.dtype(), like.device());
  if (bias.defined()) kernels::copy(like.device(), out, bias.view({1, shape[1], 1, 1}).expand(shape));
  else if (fill_zero) kernels::fill(like.device(), out, 0.0);
  return out;
}

// y [N, Cout, out_h, out_w] = conv(x [N, C, in_h, in_w], w [Cout, C/G, KH, KW]) + bias.
Tensor conv_forward(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& bias) {
  const ConvGeometry& g = p.geom;
  const int64_t batch = x.size(0), cout = w.size(0), cout_g = cout / p.groups;
  const int64_t rows = column_rows(g), rows_g = rows / p.groups, L = positions(g);
  if (p.direct) {
    Tensor y = output_with_bias({batch, cout, g.out_h, g.out_w}, w, bias, false);
    kernels::conv2d_forward(x.device(), direct_params(p, bias.defined()), y, as_dtype_of(x, w), w);
    return y;
  }
  Tensor y = output_with_bias({batch, cout, g.out_h, g.out_w}, x, bias, false);

  kernels::GemmArgs a;  // per group: y[n] = w_g @ cols_g[n]
  a.m = cout_g, a.n = L, a.k = rows_g;
  a.lda = rows_g, a.ldb = L, a.ldc = L;
  a.stride_a = 0, a.stride_b = rows * L, a.stride_c = cout * L;
  a.beta = bias.defined() ? 1.0 : 0.0;
  const int64_t chunk = images_per_chunk(batch, rows * L);
  Tensor cols = make_tensor({chunk, rows, L}, x.dtype(), x.device());
  for (int64_t n0 = 0; n0 < batch; n0 += chunk) {
    a.batch = std::min(chunk, batch - n0);
    kernels::im2col(x.device(), g, cols.narrow(0, 0, a.batch), x.narrow(0, n0, a.batch));
    Tensor y_chunk = y.narrow(0, n0, a.batch);
    for (int64_t gi = 0; gi < p.groups; ++gi)
      kernels::gemm(x.device(), a, w.narrow(0, gi * cout_g, cout_g), cols.narrow(1, gi * rows_g, rows_g),
                    y_chunk.narrow(1, gi * cout_g, cout_g));
  }
  return y;
}

// x [N, C, in_h, in_w] = the adjoint of conv_forward in x, applied to
// dy [N, Cout, out_h, out_w], + bias.
Tensor conv_input_adjoint(const ConvPlan& p, const Tensor& dy, const Tensor& w, const Tensor& bias) {
  const ConvGeometry& g = p.geom;
  const int64_t batch = dy.size(0), cout = w.size(0), cout_g = cout / p.groups;
  const int64_t rows = column_rows(g), rows_g = rows / p.groups, L = positions(g);
  if (p.direct) {
    Tensor x = output_with_bias({batch, g.channels, g.in_h, g.in_w}, w, bias, false);
    kernels::conv2d_backward_data(dy.device(), direct_params(p, bias.defined()), x, as_dtype_of(dy, w), w);
    return x;
  }
  Tensor x = output_with_bias({batch, g.channels, g.in_h, g.in_w}, dy, bias, true);

  kernels::GemmArgs a;  // per group: cols_g[n] = w_g^T @ dy_g[n]
  a.trans_a = true;
  a.m = rows_g, a.n = L, a.k = cout_g;
  a.lda = rows_g, a.ldb = L, a.ldc = L;
  a.stride_a = 0, a.stride_b = cout * L, a.stride_c = rows * L;
  const int64_t chunk = images_per_chunk(batch, rows * L);
  Tensor cols = make_tensor({chunk, rows, L}, dy.dtype(), dy.device());
  for (int64_t n0 = 0; n0 < batch; n0 += chunk) {
    a.batch = std::min(chunk, batch - n0);
    Tensor dy_chunk = dy.narrow(0, n0, a.batch);
    for (int64_t gi = 0; gi < p.groups; ++gi)
      kernels::gemm(dy.device(), a, w.narrow(0, gi * cout_g, cout_g), dy_chunk.narrow(1, gi * cout_g, cout_g),
                    cols.narrow(1, gi * rows_g, rows_g));
    kernels::col2im(dy.device(), g, x.narrow(0, n0, a.batch), cols.narrow(0, 0, a.batch));
  }
  return x;
}

// dw [Cout, C/G, KH, KW] = sum over images of dy_g[n] @ cols_g(x[n])^T.
Tensor conv_weight_grad(const ConvPlan& p, const Tensor& x, const Tensor& dy) {
  const ConvGeometry& g = p.geom;
  const int64_t batch = x.size(0), cout = dy.size(1), cout_g = cout / p.groups;
  const int64_t rows = column_rows(g), rows_g = rows / p.groups, L = positions(g);
  if (p.direct) {
    Tensor dw = make_tensor({cout, g.channels / p.groups, g.kernel_h, g.kernel_w}, x.dtype(), x.device());
    kernels::conv2d_backward_filter(x.device(), direct_params(p, false), dw, x, as_dtype_of(dy, x));
    return dw;
  }

  kernels::GemmArgs a;  // per group and image, summed over images afterwards
  a.trans_b = true;
  a.m = cout_g, a.n = rows_g, a.k = L;
  a.lda = L, a.ldb = L, a.ldc = rows_g;
  a.stride_a = cout * L, a.stride_b = rows * L, a.stride_c = cout * rows_g;
  const int64_t chunk = images_per_chunk(batch, std::max(rows * L, cout * rows_g));
  Tensor cols = make_tensor({chunk, rows, L}, x.dtype(), x.device());
  Tensor per_image = make_tensor({chunk, cout, rows_g}, x.dtype(), x.device());
  Tensor dw = zeros({cout, rows_g}, x.options());
  for (int64_t n0 = 0; n0 < batch; n0 += chunk) {
    a.batch = std::min(chunk, batch - n0);
    kernels::im2col(x.device(), g, cols.narrow(0, 0, a.batch), x.narrow(0, n0, a.batch));
    Tensor dy_chunk = dy.narrow(0, n0, a.batch);
    for (int64_t gi = 0; gi < p.groups; ++gi)
      kernels::gemm(x.device(), a, dy_chunk.narrow(1, gi * cout_g, cout_g), cols.narrow(1, gi * rows_g, rows_g),
                    per_image.narrow(1, gi * cout_g, cout_g));
    dw = dw + sum(per_image.narrow(0, 0, a.batch), {0});
  }
  return dw.view({cout, g.channels / p.groups, g.kernel_h, g.kernel_w});
}

Tensor conv_op(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y;
  {
    NoGradGuard ng;
    y = conv_forward(p, x, w, b);
  }
  if (any_requires_grad({x, w, b}))
    record(p.op, y, {x, w, b}, [p, x, w, b](const Tensor& grad, const Node& n) {
      Tensor dy = grad.contiguous();
      Grads r(3);
      if (n.needs_input_grad(0)) r[0] = conv_input_adjoint(p, dy, w, Tensor());
      if (n.needs_input_grad(1)) r[1] = conv_weight_grad(p, x, dy);
      if (n.needs_input_grad(2)) r[2] = sum(dy, {0, 2, 3});
      return r;
    });
  return y;
}

// x plays the convolution's output gradient, y its input.
Tensor conv_transpose_op(const ConvPlan& p, const Tensor& x, const Tensor& w, const Tensor& b) {
  Tensor y;
  {
    NoGradGuard ng;
    y = conv_input_adjoint(p, x, w, b);
  }
  if (any_requires_grad({x, w, b}))
    record(p.op, y, {x, w, b}, [p, x, w, b](const Tensor& grad, const Node& n) {
      Tensor dy = grad.contiguous();
      Grads r(3);
      if (n.needs_input_grad(0)) r[0] = conv_forward(p, dy, w, Tensor());
      if (n.needs_input_grad(1)) r[1] = conv_weight_grad(p, dy, x);
      if (n.needs_input_grad(2)) r[2] = sum(dy, {0, 2, 3});
      return r;
    });
  return y;
}

// ---- argument checks

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// A spatial parameter as the user gave it: "3" for 1-D, "[3,3]" for 2-D.
std::string spatial(const int64_t v[2], int dims) {
  std::ostringstream os;
  if (dims == 1) os << v[1];
  else os << "[" << v[0] << "," << v[1] << "]";
  return os.str();
}

// Validates a convolution's operands and arguments (`dims` spatial dims;
// 1-D arguments sit at index 1) and works out its geometry.
ConvPlan plan(const char* op, bool transposed, int dims, const Tensor& x, const Tensor& w, const Tensor& b,
              const Conv2dArgs& a) {
  if (!x.defined() || !w.defined()) error(op, ": input and weight must be defined");
  if (x.dim() != dims + 2) error(op, ": input must be ", dims == 1 ? "[N, C, L]" : "[N, C, H, W]", ", got ", x.shape());
  if (w.dim() != dims + 2)
    error(op, ": weight must be ", transposed ? "[Cin, Cout/groups, " : "[Cout, Cin/groups, ",
          dims == 1 ? "K]" : "KH, KW]", ", got ", w.shape());
  if (x.device() != w.device() || (b.defined() && b.device() != x.device()))
    error(op, ": input, weight and bias must be on one device");
  if (!is_floating(x.dtype()) || !is_floating(w.dtype()) || (b.defined() && !is_floating(b.dtype())))
    error(op, ": needs floating tensors, got input ", x.dtype(), " and weight ", w.dtype());

  const int64_t groups = a.groups;
  if (groups < 1) error(op, ": groups must be positive, got ", groups);
  for (int d = 2 - dims; d < 2; ++d) {
    if (a.stride[d] < 1 || a.dilation[d] < 1)
      error(op, ": stride ", spatial(a.stride, dims), " and dilation ", spatial(a.dilation, dims), " must be positive");
    if (a.padding[d] < 0) error(op, ": padding ", spatial(a.padding, dims), " must not be negative");
    if (!transposed && a.output_padding[d] != 0)
      error(op, ": output_padding ", spatial(a.output_padding, dims), " applies to transposed convolutions only");
    if (transposed &&
        (a.output_padding[d] < 0 || (a.output_padding[d] >= a.stride[d] && a.output_padding[d] >= a.dilation[d])))
      error(op, ": output_padding ", spatial(a.output_padding, dims), " must be smaller than stride ",
            spatial(a.stride, dims), " or dilation ", spatial(a.dilation, dims));
  }

  const int64_t cin = x.size(1);
  int64_t cout = 0;
  if (!transposed) {
    cout = w.size(0);
    if (cout % groups != 0)
      error(op, ": weight ", w.shape(), " has ", cout, " output channels, not divisible by groups ", groups);
    if (w.size(1) * groups != cin)
      error(op, ": input ", x.shape(), " has ", cin, " channels but weight ", w.shape(), " expects ",
            w.size(1) * groups, " (groups ", groups, ")");
  } else {
    if (w.size(0) != cin)
      error(op, ": input ", x.shape(), " has ", cin, " channels but weight ", w.shape(), " expects ", w.size(0));
    if (cin % groups != 0)
      error(op, ": weight ", w.shape(), " has ", cin, " input channels, not divisible by groups ", groups);
    cout = w.size(1) * groups;
  }
  if (b.defined() && (b.dim() != 1 || b.size(0) != cout))
    error(op, ": bias ", b.shape(), " does not match the ", cout, " output channels");

  const int64_t in[2] = {dims == 2 ? x.size(2) : 1, x.size(-1)};
  const int64_t kernel[2] = {dims == 2 ? w.size(2) : 1, w.size(-1)};
  int64_t out[2];
  for (int d = 0; d < 2; ++d) {
    const int64_t span = a.dilation[d] * (kernel[d] - 1);
    out[d] = transposed ? (in[d] - 1) * a.stride[d] - 2 * a.padding[d] + span + a.output_padding[d] + 1
                        : floor_div(in[d] + 2 * a.padding[d] - span - 1, a.stride[d]) + 1;
  }
  if (out[0] <= 0 || out[1] <= 0)
    error(op, ": input ", x.shape(), " with padding ", spatial(a.padding, dims), " is too small for kernel ",
          spatial(kernel, dims), " with stride ", spatial(a.stride, dims), " and dilation ",
          spatial(a.dilation, dims), ": output size would be ", spatial(out, dims));

  ConvPlan p{op, {}, groups};
  ConvGeometry& g = p.geom;
  g.channels = transposed ? cout : cin;
  g.in_h = transposed ? out[0] : in[0], g.in_w = transposed ? out[1] : in[1];
  g.out_h = transposed ? in[0] : out[0], g.out_w = transposed ? in[1] : out[1];
  g.kernel_h = kernel[0], g.kernel_w = kernel[1];
  g.stride_h = a.stride[0], g.stride_w = a.stride[1];
  g.pad_h = a.padding[0], g.pad_w = a.padding[1];
  g.dilation_h = a.dilation[0], g.dilation_w = a.dilation[1];
  return p;
}

// Whether the direct slots can run p on device d: a backend fills them, and
// the convolution's output covers exactly `geom.out` (a transposed one with
// output_padding >= stride leaves input rows no output reads, which only the
// im2col path expresses).
bool direct_ok(const ConvPlan& p, Device d) {
  const ConvGeometry& g = p.geom;
  auto covers = [](int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
    return (in + 2 * pad - dilation * (k - 1) - 1) / stride + 1 == out;
  };
  return kernels::conv2d_forward.has(d.type) && kernels::conv2d_backward_data.has(d.type) &&
         kernels::conv2d_backward_filter.has(d.type) &&
         covers(g.in_h, g.out_h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h) &&
         covers(g.in_w, g.out_w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
}

// The kernels compute in f64 or f32 (bf16/f16 go through f32, except in the
// direct slots); contiguous.
Tensor prepared(const Tensor& t, DType compute) {
  if (!t.defined()) return t;
  return (t.dtype() == compute ? t : t.to(compute)).contiguous();
}

Tensor convolution(const char* op, bool transposed, int dims, const Tensor& x, const Tensor& w, const Tensor& b,
                   const Conv2dArgs& args) {
  ConvPlan p = plan(op, transposed, dims, x, w, b, args);
  DType t = promote(x.dtype(), w.dtype());
  if (b.defined()) t = promote(t, b.dtype());
  p.direct = t != DType::f64 && direct_ok(p, x.device());
  const bool half = t == DType::bf16 || t == DType::f16;
  const DType compute = t == DType::f64 ? DType::f64 : p.direct && half ? t : DType::f32;
  Tensor xc = prepared(x, compute), wc = prepared(w, compute), bc = prepared(b, compute);
  if (dims == 1) {
    xc = xc.unsqueeze(2);
    wc = wc.unsqueeze(2);
  }
  Tensor y = transposed ? conv_transpose_op(p, xc, wc, bc) : conv_op(p, xc, wc, bc);
  if (dims == 1) y = y.squeeze(2);
  return t == compute ? y : y.to(t);
}

Conv2dArgs as_2d(const Conv1dArgs& a) {
  Conv2dArgs r;
  r.stride[1] = a.stride, r.padding[1] = a.padding, r.dilation[1] = a.dilation;
  r.output_padding[1] = a.output_padding;
  r.groups = a.groups;
  return r;
}

}  // namespace

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv1dArgs& args) {
  return convolution("conv1d", false, 1, x, weight, bias, as_2d(args));
}

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args) {
  return convolution("conv2d", false, 2, x, weight, bias, args);
}

Tensor conv_transpose1d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv1dArgs& args) {
  return convolution("conv_transpose1d", true, 1, x, weight, bias, as_2d(args));
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dArgs& args) {
  return convolution("conv_transpose2d", true, 2, x, weight, bias, args);
}

}  // namespace fm

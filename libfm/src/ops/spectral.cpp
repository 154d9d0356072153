// rfft and irfft: argument checks and autograd; the transforms are the
// backends' (fm/kernels/spectral.h).
#include "fm/ops/spectral.h"

#include <vector>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/spectral.h"
#include "fm/ops/elementwise.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

Tensor prepared(const Tensor& x) {
  const DType c = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  return (x.dtype() == c ? x : x.to(c)).contiguous();
}

void check_kernel(const char* op, const Kernel<void(const Tensor&, const Tensor&)>& k, Device d) {
  if (d.type == DeviceType::cpu && !k.has(DeviceType::cpu))
    error(op, ": no FFT on the CPU: libfm was built without FFmpeg's libavutil (Debian: libavutil-dev)");
}

// Per-bin weights [bins, 2] of the adjoints: `interior` for bins with a
// mirror image in the full spectrum, `edge` for DC and an even n's Nyquist
// bin, whose imaginary parts carry no signal (weight 0).
Tensor bin_weights(int64_t n, double interior, double edge, DType dtype, Device device) {
  const int64_t bins = n / 2 + 1;
  std::vector<double> w(size_t(bins * 2), interior);
  w[0] = edge;
  w[1] = 0;
  if (n % 2 == 0) {
    w[size_t(2 * (bins - 1))] = edge;
    w[size_t(2 * (bins - 1) + 1)] = 0;
  }
  return tensor(w, {bins, 2}).to(dtype).to(device);
}

Tensor run_rfft(const Tensor& xc) {
  const int64_t n = xc.size(-1);
  Shape out_shape = xc.shape();
  out_shape[out_shape.size() - 1] = n / 2 + 1;
  out_shape.push_back(2);
  Tensor X = make_tensor(out_shape, xc.dtype(), xc.device());
  if (xc.numel() > 0) kernels::rfft(xc.device(), X.view({-1, n / 2 + 1, 2}), xc.view({-1, n}));
  return X;
}

Tensor run_irfft(const Tensor& Xc, int64_t n) {
  Shape out_shape = Xc.shape();
  out_shape.erase(out_shape.size() - 1);
  out_shape[out_shape.size() - 1] = n;
  Tensor x = make_tensor(out_shape, Xc.dtype(), Xc.device());
  if (x.numel() > 0) kernels::irfft(Xc.device(), x.view({-1, n}), Xc.view({-1, n / 2 + 1, 2}));
  return x;
}

}  // namespace

Tensor rfft(const Tensor& x) {
  if (!x.defined() || x.dim() < 1) error("rfft: input must have at least one dim");
  if (!is_floating(x.dtype())) error("rfft: needs a real floating tensor, got ", x.dtype());
  const int64_t n = x.size(-1);
  if (n < 1) error("rfft: the last dim of ", x.shape(), " is empty");
  check_kernel("rfft", kernels::rfft, x.device());
  Tensor xc = prepared(x);
  Tensor X = run_rfft(xc);
  if (any_requires_grad({xc}))
    record("rfft", X, {xc}, [n](const Tensor& grad, const Node&) {
      // The adjoint of the real DFT: n * irfft of the gradient with the
      // mirrored bins halved (irfft counts each of them twice).
      const Tensor w = bin_weights(n, 0.5 * double(n), double(n), grad.dtype(), grad.device());
      return Grads{irfft(grad * w, n)};
    });
  return X.dtype() == x.dtype() ? X : X.to(x.dtype());
}

Tensor irfft(const Tensor& X, int64_t n) {
  if (!X.defined() || X.dim() < 2 || X.size(-1) != 2)
    error("irfft: input must be [..., bins, 2] (real, imaginary), got ", X.defined() ? X.shape() : Shape{});
  if (!is_floating(X.dtype())) error("irfft: needs a floating tensor, got ", X.dtype());
  if (n < 1 || X.size(-2) != n / 2 + 1)
    error("irfft: ", X.size(-2), " bins do not make a signal of length ", n, " (needs n / 2 + 1 bins)");
  check_kernel("irfft", kernels::irfft, X.device());
  Tensor Xc = prepared(X);
  Tensor x = run_irfft(Xc, n);
  if (any_requires_grad({Xc}))
    record("irfft", x, {Xc}, [n](const Tensor& grad, const Node&) {
      // The adjoint of irfft: rfft of the gradient, / n, mirrored bins doubled.
      const Tensor w = bin_weights(n, 2.0 / double(n), 1.0 / double(n), grad.dtype(), grad.device());
      return Grads{rfft(grad) * w};
    });
  return x.dtype() == X.dtype() ? x : x.to(X.dtype());
}

}  // namespace fm

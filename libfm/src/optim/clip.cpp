#include "fm/optim/clip.h"

#include <cmath>

#include "fm/autograd.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"
#include "layout.h"

namespace fm::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  FM_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  const std::vector<Tensor> spans = detail::merge_neighbours(grads);
  double total = 0;
  for (const Tensor& s : spans) total += sum(square(s)).to(DType::f64).item();
  const double norm = std::sqrt(total);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& s : spans) kernels::unary(s.device(), UnaryOp::mul_scalar, s, s, scale, 0.0);
  }
  return norm;
}

}  // namespace fm::optim

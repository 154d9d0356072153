// Losses. cross_entropy runs the fused kernels (per-row loss and logsumexp
// forward, gradient written straight from the saved logsumexp); the
// reduction over rows is ordinary autograd ops. mse_loss and l1_loss are
// compositions.
#include "fm/ops/loss.h"

#include "fm/autocast.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/norm.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

enum class Reduction { none, mean, sum };

Reduction parse_reduction(const char* op, const std::string& r) {
  if (r == "mean") return Reduction::mean;
  if (r == "sum") return Reduction::sum;
  if (r == "none") return Reduction::none;
  error(op, ": reduction must be 'mean', 'sum' or 'none', got '", r, "'");
}

Tensor reduce_loss(const Tensor& l, Reduction r) {
  if (r == Reduction::mean) return mean(l);
  if (r == Reduction::sum) return sum(l);
  return l;
}

void check_cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  if (!is_floating(logits.dtype())) error("cross_entropy: logits must be floating, got ", logits.dtype());
  if (target.dtype() != DType::i64 && target.dtype() != DType::i32)
    error("cross_entropy: target must be int32 or int64, got ", target.dtype());
  if (logits.dim() == 0 || logits.size(-1) == 0)
    error("cross_entropy: logits ", logits.shape(), " need a non-empty class dim (last)");
  const Shape expected(logits.shape().begin(), logits.shape().end() - 1);
  if (target.shape() != expected)
    error("cross_entropy: logits ", logits.shape(), " need target ", expected, ", got ", target.shape());
  if (logits.device() != target.device())
    error("cross_entropy: logits on ", logits.device().str(), " but target on ", target.device().str());
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
    error("cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     const std::string& reduction) {
  const Reduction red = parse_reduction("cross_entropy", reduction);
  check_cross_entropy(logits, target, label_smoothing);
  const int64_t classes = logits.size(-1), rows = target.numel();
  const DType stat = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor x2, t1;
  {
    NoGradGuard ng;
    x2 = logits.contiguous().view({rows, classes});
    t1 = target.contiguous().view({rows});
  }
  Tensor loss_rows = make_tensor({rows}, stat, logits.device());
  Tensor lse = make_tensor({rows}, stat, logits.device());
  kernels::cross_entropy_forward(logits.device(), loss_rows, lse, x2, t1, ignore_index, label_smoothing);
  if (any_requires_grad({logits})) {
    const Shape shape = logits.shape();
    record("cross_entropy", loss_rows, {logits},
           [x2, t1, lse, shape, ignore_index, label_smoothing](const Tensor& g, const Node&) {
             Tensor g1 = (g.dtype() == lse.dtype() ? g : g.to(lse.dtype())).contiguous();
             Tensor dlogits = make_tensor(x2.shape(), x2.dtype(), x2.device());
             kernels::cross_entropy_backward(x2.device(), dlogits, g1, x2, t1, lse, ignore_index, label_smoothing);
             return Grads{dlogits.view(shape)};
           });
  }

  Tensor out;
  if (red == Reduction::none) {
    out = loss_rows.view(target.shape());
  } else if (red == Reduction::sum) {
    out = sum(loss_rows);
  } else {  // mean over the targets that are not ignored (0/0 = NaN if none)
    Tensor count = sum(ne(t1, scalar_tensor(double(ignore_index), TensorOptions(t1.dtype()).device(t1.device()))));
    out = sum(loss_rows) / count.to(stat);
  }
  // Under autocast the loss stays in f32 (as PyTorch's autocast runs
  // cross_entropy in f32), so the backward starts from an f32 gradient.
  return autocast_dtype() ? out : out.to(logits.dtype());
}

namespace {
// f(input - target), reduced; input and target must have one shape.
template <class F>
Tensor pointwise_loss(const char* op, const Tensor& input, const Tensor& target, const std::string& reduction, F f) {
  const Reduction red = parse_reduction(op, reduction);
  if (!is_floating(input.dtype())) error(op, ": input must be floating, got ", input.dtype());
  if (input.shape() != target.shape())
    error(op, ": input ", input.shape(), " and target ", target.shape(), " differ in shape");
  if (input.device() != target.device())
    error(op, ": input on ", input.device().str(), " but target on ", target.device().str());
  return reduce_loss(f(input - target), red);
}
}  // namespace

Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  return pointwise_loss("mse_loss", input, target, reduction, [](const Tensor& d) { return square(d); });
}

Tensor l1_loss(const Tensor& input, const Tensor& target, const std::string& reduction) {
  return pointwise_loss("l1_loss", input, target, reduction, [](const Tensor& d) { return abs(d); });
}

}  // namespace fm

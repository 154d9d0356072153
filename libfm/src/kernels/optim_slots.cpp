// The fused optimizer kernel slots (declared in fm/kernels/optim.h).
#include "fm/kernels/optim.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamWArgs&)> adamw_step{
    "adamw_step"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const SGDArgs&)> sgd_step{"sgd_step"};
constinit Kernel<void(const Tensor&, const Tensor&, double)> ema_update{"ema_update"};

void check_optim_operands(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!t->is_contiguous() || t->numel() != first.numel() || t->dtype() != first.dtype())
      error(op, ": operands must be contiguous with one length and dtype, got ", t->shape(), " ", t->dtype(), " and ",
            first.shape(), " ", first.dtype());
  }
  if (first.dtype() != DType::f32 && first.dtype() != DType::f64)
    error(op, ": parameters must be float32 or float64, got ", first.dtype());
}

}  // namespace fm::kernels

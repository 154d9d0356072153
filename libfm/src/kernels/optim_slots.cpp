// The fused optimizer kernel slots (declared in fm/kernels/optim.h).
#include "fm/kernels/optim.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const AdamWArgs&)> adamw_step{
    "adamw_step"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const SGDArgs&)> sgd_step{"sgd_step"};
constinit Kernel<void(const Tensor&, const Tensor&, double)> ema_update{"ema_update"};

}  // namespace fm::kernels

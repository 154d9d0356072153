// The attention, rotary and dropout kernel slots (declared in fm/kernels/attention.h).
#include "fm/kernels/attention.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                      bool, double)>
    attention_forward{"attention_forward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                      const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double)>
    attention_backward{"attention_backward"};
constinit Kernel<void(const Tensor&, const Tensor&, int64_t, double, bool)> rotary{"rotary"};
constinit Kernel<void(const Tensor&, const Tensor&, PhiloxState, double)> dropout{"dropout"};

}  // namespace fm::kernels

// The softmax, normalisation and cross-entropy kernel slots (declared in
// fm/kernels/norm.h).
#include "fm/kernels/norm.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&, bool)> softmax_forward{"softmax_forward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, bool)> softmax_backward{"softmax_backward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, double)>
    layer_norm_forward{"layer_norm_forward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                      const Tensor&, const Tensor&)>
    layer_norm_backward{"layer_norm_backward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double)> rms_norm_forward{
    "rms_norm_forward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&)>
    rms_norm_backward{"rms_norm_backward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double)>
    cross_entropy_forward{"cross_entropy_forward"};
constinit Kernel<void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, int64_t, double)>
    cross_entropy_backward{"cross_entropy_backward"};

}  // namespace fm::kernels

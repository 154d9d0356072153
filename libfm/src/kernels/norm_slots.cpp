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

void check_cross_entropy_inputs(const Tensor& logits, const Tensor& target) {
  if (!logits.is_contiguous() || logits.dim() != 2 || !target.is_contiguous() || target.dim() != 1 ||
      target.size(0) != logits.size(0))
    error("cross_entropy: expects contiguous logits [rows, C] and target [rows], got ", logits.shape(), " and ",
          target.shape());
}

}  // namespace fm::kernels

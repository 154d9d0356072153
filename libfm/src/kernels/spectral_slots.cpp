// The real DFT kernel slots (fm/kernels/spectral.h).
#include "fm/kernels/spectral.h"

namespace fm::kernels {

constinit Kernel<void(const Tensor&, const Tensor&)> rfft{"rfft"};
constinit Kernel<void(const Tensor&, const Tensor&)> irfft{"irfft"};

}  // namespace fm::kernels

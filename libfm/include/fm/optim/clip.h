#pragma once
// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
#include <vector>

#include "fm/tensor.h"

namespace fm::optim {

// The L2 norm of all gradients of `params` together (accumulated in f64;
// parameters without a gradient are skipped). When it exceeds max_norm the
// gradients are scaled in place by max_norm / (norm + 1e-6). Returns the norm
// before clipping. Gradients packed by nn::flatten_parameters are handled as
// a few long spans (gaps of fewer than 16 elements between neighbours are
// taken to be zero padding, as flatten_parameters leaves them).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace fm::optim

#pragma once
#include <string>

#include "fm/tensor.h"

namespace fm {

// logits [N, C] (or [..., C]), target integer [N] (or [...]). Fused
// log-softmax + NLL that never materialises more than a tile of N x C beyond
// the logits; targets equal to ignore_index are skipped and the mean is over
// the others. reduction: "mean", "sum" or "none". label_smoothing s as
// PyTorch: (1 - s) * nll + s * mean over classes of -log_softmax. A target
// outside [0, C) that is not ignore_index throws fm::Error.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0, const std::string& reduction = "mean");
// input and target of one shape (no broadcasting); reduction as above.
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");
Tensor l1_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");

}  // namespace fm

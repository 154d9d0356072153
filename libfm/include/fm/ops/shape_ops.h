#pragma once
// Joining, splitting and padding.
#include <string>
#include <vector>

#include "fm/tensor.h"

namespace fm {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Pieces of `split_size` along dim (the last may be smaller); views.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// torch.nn.functional.pad: `pads` lists (left, right) pairs from the last dim
// backwards; negative pads crop. mode: "constant", "reflect", "replicate".
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode = "constant",
           double value = 0.0);

}  // namespace fm

#pragma once
// Joining, splitting and padding.
#include <string>
#include <vector>

#include "fm/tensor.h"

namespace fm {

// Promotes dtypes as PyTorch; 1-D empty tensors are skipped (an empty accumulator).
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Pieces of `split_size` along dim (the last may be smaller); views.
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);
// Pieces of ceil(size / chunks): possibly fewer than `chunks`, as torch.chunk.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
// torch.nn.functional.pad: `pads` lists (left, right) pairs from the last dim
// backwards; negative pads crop. mode: "constant", "reflect", "replicate"
// (any number of trailing dims in every mode; reflect pads must be smaller
// than their dim).
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode = "constant",
           double value = 0.0);

}  // namespace fm

#pragma once
// Finding tensors that lie one after another in one storage, as
// nn::flatten_parameters packs parameters and their gradients, so that a
// fused kernel can treat them as one stretch of memory.
#include <cstdint>
#include <vector>

#include "fm/tensor.h"

namespace fm::optim::detail {

// nn::flatten_parameters starts every slot at a multiple of 16 elements and
// zero-fills the padding, so neighbours are less than this apart.
constexpr int64_t kMaxPadding = 16;

// The number of elements between the end of `a` and the start of `b` when
// both are contiguous views of one storage and b starts less than
// kMaxPadding elements after a ends; -1 otherwise.
int64_t padding_between(const Tensor& a, const Tensor& b);

// A 1-D view of `length` elements of t's storage, from t's first element.
Tensor span_from(const Tensor& t, int64_t length);

// Indices of `ts` ordered by storage (in order of first appearance, so the
// result does not depend on addresses) and then offset: the order in which
// neighbours are found, whatever order the caller lists them in.
std::vector<size_t> address_order(const std::vector<Tensor>& ts);

// The tensors (in address order) with neighbours merged into 1-D spans,
// padding included: whatever lies in such a gap is treated as part of the
// span. Tensors that are not contiguous come back as they are.
std::vector<Tensor> merge_neighbours(const std::vector<Tensor>& ts);

}  // namespace fm::optim::detail

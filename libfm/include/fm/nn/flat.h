#pragma once
// Flat parameter buffers (llm.c style): once a model is built, its
// parameters and their gradients are packed into one contiguous buffer per
// (dtype, device), each parameter becoming a view. Module code does not
// change; optimizers, gradient all-reduce and checkpoint writes then work on
// offsets into a few big buffers.
#include <vector>

#include "fm/nn/module.h"

namespace fm::nn {

struct FlatSlot {
  std::string name;
  Tensor param;    // a view of FlatGroup::data
  int64_t offset;  // in elements, into data and grad
  int64_t numel;
  uint32_t tags;
};

struct FlatGroup {
  DType dtype;
  Device device;
  Tensor data;  // 1-D, all parameters of this dtype and device
  Tensor grad;  // 1-D, same layout; each parameter's .grad() is a view of it
  std::vector<FlatSlot> slots;  // by tags, then registration order
};

struct FlatParameters {
  std::vector<FlatGroup> groups;
};

// Packs m's trainable parameters (values kept, gradients zeroed); frozen
// ones (requires_grad false) stay where they are, without a gradient. Each slot starts at a
// multiple of 16 elements so kernels see aligned views.
FlatParameters flatten_parameters(Module& m);

}  // namespace fm::nn

#pragma once
// What a Tensor handle points to. Kernels and backends read it; user code
// goes through fm::Tensor.
#include <memory>
#include <vector>

#include "fm/allocator.h"
#include "fm/tensor.h"

namespace fm {

// A block of device memory shared by a tensor and its views.
struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Allocator* allocator = nullptr;  // null: memory owned elsewhere (from_blob)
  std::shared_ptr<void> owner;     // keeps borrowed memory alive (e.g. a file mapping)

  Storage(size_t n, Device d);             // allocates n bytes on d
  Storage(void* external, size_t n, Device d);  // borrows memory it does not free
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;

  // autograd state
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;       // null for leaves
  std::shared_ptr<TensorImpl> grad;    // accumulated gradient of a leaf
  std::weak_ptr<Node> grad_accumulator;  // the leaf's AccumulateGrad node, while a graph uses it
  std::vector<GradHook> post_accumulate_hooks;
};

// A new contiguous tensor (uninitialised memory).
Tensor make_tensor(const Shape& shape, DType dtype, Device device);
// A view of `base`'s storage with other metadata.
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

}  // namespace fm

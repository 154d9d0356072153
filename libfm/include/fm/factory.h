#pragma once
// Tensor factories, named as in PyTorch.
#include <memory>
#include <vector>

#include "fm/random.h"
#include "fm/tensor.h"

namespace fm {

Tensor empty(const Shape& shape, TensorOptions opt = {});
Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor scalar_tensor(double value, TensorOptions opt = {});  // 0-dim
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor empty_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

// [start, end) in steps of `step`; dtype f32 unless given.
Tensor arange(double start, double end, double step = 1.0, TensorOptions opt = {});
Tensor arange(double end, TensorOptions opt = {});
Tensor linspace(double start, double end, int64_t steps, TensorOptions opt = {});

// Random tensors from a Philox stream (the default generator when null).
Tensor randn(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);
Tensor rand(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);  // U[0,1)
Tensor randint(int64_t low, int64_t high, const Shape& shape,
               TensorOptions opt = DType::i64, Generator* gen = nullptr);  // [low, high)

// Copies of host data. The vector's element type sets the dtype unless opt
// names another; the shape defaults to 1-D.
template <class T>
Tensor tensor(const std::vector<T>& values, const Shape& shape, TensorOptions opt);
template <class T>
Tensor tensor(const std::vector<T>& values, const Shape& shape) {
  return tensor(values, shape, TensorOptions(dtype_of<T>::value));
}
template <class T>
Tensor tensor(const std::vector<T>& values) {
  return tensor(values, Shape{int64_t(values.size())});
}
// Copies `shape.numel()` elements of type `dtype` from raw host memory.
Tensor from_buffer(const void* data, const Shape& shape, DType dtype, Device device = Device::cpu());
// Wraps memory owned elsewhere without copying; it must outlive the tensor.
Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = Device::cpu());
// The same, keeping `owner` alive as long as any tensor uses the memory.
Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner,
                 Device device = Device::cpu());

}  // namespace fm

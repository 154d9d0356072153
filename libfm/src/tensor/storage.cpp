#include "fm/tensor_impl.h"

namespace fm {

Storage::Storage(size_t n, Device d) : nbytes(n), device(d), allocator(allocator_for(d)) {
  data = allocator->allocate(n);
}

Storage::Storage(void* external, size_t n, Device d) : data(external), nbytes(n), device(d) {}

Storage::~Storage() {
  if (allocator) allocator->deallocate(data, nbytes);
}

Tensor make_tensor(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) FM_CHECK(s >= 0, "empty: negative size in shape ", shape);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape.numel()) * itemsize(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

}  // namespace fm

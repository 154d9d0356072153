#pragma once
// fm::Tensor: a cheap handle to a refcounted TensorImpl (dtype, shape, strides,
// storage offset, device, autograd state). Copies of a Tensor share the impl;
// views share the storage. Names follow PyTorch.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fm/device.h"
#include "fm/dtype.h"
#include "fm/error.h"
#include "fm/shape.h"

namespace fm {

struct TensorImpl;
class Node;
class Tensor;

using GradHook = std::function<void(Tensor& param)>;

// What a factory makes: dtype, device and whether it is a leaf that needs grad.
// Converts implicitly from a DType or a Device: fm::zeros({2, 3}, DType::f64).
struct TensorOptions {
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu();
  bool requires_grad_ = false;

  TensorOptions() = default;
  TensorOptions(DType t) : dtype_(t) {}    // NOLINT: implicit on purpose
  TensorOptions(Device d) : device_(d) {}  // NOLINT
  TensorOptions dtype(DType t) const { auto o = *this; o.dtype_ = t; return o; }
  TensorOptions device(Device d) const { auto o = *this; o.device_ = d; return o; }
  TensorOptions requires_grad(bool r = true) const { auto o = *this; o.requires_grad_ = r; return o; }
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- metadata
  const Shape& shape() const;
  const Shape& sizes() const { return shape(); }
  int64_t size(int64_t dim) const;
  const Shape& strides() const;
  int64_t stride(int64_t dim) const;
  int dim() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  int64_t storage_offset() const;
  size_t itemsize() const;
  size_t nbytes() const { return size_t(numel()) * itemsize(); }
  bool is_contiguous() const;
  TensorOptions options() const { return TensorOptions(dtype()).device(device()); }

  // Pointer to element 0 (storage data + offset). data<T>() checks the dtype.
  void* data_ptr() const;
  template <class T> T* data() const {
    check_dtype(dtype_of<T>::value, "data");
    return static_cast<T*>(data_ptr());
  }

  // ---- conversions (differentiable)
  Tensor to(DType t) const;
  Tensor to(Device d) const;
  Tensor contiguous() const;
  Tensor clone() const;
  double item() const;  // the value of a one-element tensor
  template <class T> T item() const { return static_cast<T>(item()); }
  template <class T> std::vector<T> to_vector() const;  // all elements, row-major

  // ---- views (share storage; differentiable)
  Tensor view(const Shape& shape) const;     // -1 infers one dim; needs compatible strides
  Tensor reshape(const Shape& shape) const;  // a view when possible, else a copy
  Tensor permute(const Shape& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // drops `dim`
  Tensor expand(const Shape& shape) const;           // -1 keeps a size
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;

  // ---- common math as members (the free functions in fm/ops/ are the full set)
  Tensor matmul(const Tensor& o) const;
  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;
  Tensor exp() const;
  Tensor log() const;
  Tensor sqrt() const;
  Tensor pow(double p) const;
  Tensor abs() const;
  Tensor neg() const;

  // ---- autograd
  bool requires_grad() const;
  Tensor& requires_grad_(bool r = true);
  bool is_leaf() const;
  Tensor grad() const;           // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g) const;
  const std::shared_ptr<Node>& grad_fn() const;
  // Backpropagates from this tensor; `grad` defaults to ones for a scalar.
  void backward(const Tensor& grad = Tensor()) const;
  Tensor detach() const;  // shares storage, no history
  // Called after this leaf's gradient is final for the current backward pass
  // (all contributions accumulated); distributed training reduces it there.
  void register_post_accumulate_grad_hook(GradHook hook) const;

  // ---- in-place updates (not recorded by autograd; for optimizers and init)
  Tensor& fill_(double v);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype and device

  std::string str() const;  // printed like PyTorch

  void check_dtype(DType t, const char* op) const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace fm

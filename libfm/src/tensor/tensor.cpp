// Tensor metadata, conversions, autograd accessors and in-place updates.
#include "fm/tensor.h"

#include <cstring>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/linalg.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {
TensorImpl& checked(const std::shared_ptr<TensorImpl>& p) {
  if (!p) error("use of an undefined tensor");
  return *p;
}
}  // namespace

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
int Tensor::dim() const { return shape().size(); }
int64_t Tensor::numel() const { return shape().numel(); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device; }
int64_t Tensor::storage_offset() const { return checked(impl_).offset; }
size_t Tensor::itemsize() const { return fm::itemsize(dtype()); }

bool Tensor::is_contiguous() const {
  const auto& s = shape();
  const auto& st = strides();
  if (s.numel() == 0) return true;
  int64_t expected = 1;
  for (int i = s.size() - 1; i >= 0; --i) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  auto& impl = checked(impl_);
  return static_cast<char*>(impl.storage->data) + impl.offset * int64_t(fm::itemsize(impl.dtype));
}

void Tensor::check_dtype(DType t, const char* op) const {
  if (dtype() != t) error(op, ": expected a ", name(t), " tensor, got ", name(dtype()));
}

// ---- conversions

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = make_tensor(shape(), t, device());
  kernels::copy(device(), out, *this);
  if (any_requires_grad({*this}) && is_floating(t)) {
    const DType from = dtype();
    record("to_dtype", out, {*this}, [from](const Tensor& g, const Node&) { return std::vector<Tensor>{g.to(from)}; });
  }
  return out;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = make_tensor(shape(), dtype(), d);
  kernels::copy_across(d.is_cpu() ? device() : d, out, src);
  if (any_requires_grad({*this})) {
    const Device from = device();
    record("to_device", out, {*this}, [from](const Tensor& g, const Node&) { return std::vector<Tensor>{g.to(from)}; });
  }
  return out;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = make_tensor(shape(), dtype(), device());
  kernels::copy(device(), out, *this);
  if (any_requires_grad({*this}))
    record("clone", out, {*this}, [](const Tensor& g, const Node&) { return std::vector<Tensor>{g}; });
  return out;
}

double Tensor::item() const {
  if (numel() != 1) error("item: tensor of shape ", shape(), " has ", numel(), " elements, not one");
  NoGradGuard ng;
  Tensor c = to(Device::cpu()).to(DType::f64).contiguous();
  return *static_cast<const double*>(c.data_ptr());
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  NoGradGuard ng;
  Tensor c = to(Device::cpu()).to(dtype_of<T>::value).contiguous();
  std::vector<T> v(size_t(c.numel()));
  if (!v.empty()) std::memcpy(static_cast<void*>(v.data()), c.data_ptr(), v.size() * sizeof(T));
  return v;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;
template std::vector<f16> Tensor::to_vector<f16>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

// ---- autograd

bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }

Tensor& Tensor::requires_grad_(bool r) {
  auto& impl = checked(impl_);
  if (impl.grad_fn && !r) error("requires_grad_: cannot turn off gradients of a non-leaf tensor");
  if (r && !is_floating(impl.dtype)) error("requires_grad_: only floating tensors can require grad, not ", impl.dtype);
  impl.requires_grad = r;
  return *this;
}

bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }

Tensor Tensor::grad() const {
  auto& impl = checked(impl_);
  return impl.grad ? Tensor(impl.grad) : Tensor();
}

void Tensor::set_grad(const Tensor& g) const {
  auto& impl = checked(impl_);
  if (g.defined() && g.shape() != impl.shape)
    error("set_grad: gradient of shape ", g.shape(), " for a tensor of shape ", impl.shape);
  impl.grad = g.impl_ptr();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

void Tensor::backward(const Tensor& grad) const {
  if (!requires_grad()) error("backward: the tensor does not require grad (no op with a grad input made it)");
  Tensor g = grad;
  if (!g.defined()) {
    if (numel() != 1) error("backward: a gradient is needed for a non-scalar tensor of shape ", shape());
    g = ones(shape(), options());
  } else if (g.shape() != shape()) {
    error("backward: gradient of shape ", g.shape(), " for a tensor of shape ", shape());
  }
  run_backward(*this, g);
}

Tensor Tensor::detach() const {
  auto& impl = checked(impl_);
  return make_view(*this, impl.shape, impl.strides, impl.offset);
}

void Tensor::register_post_accumulate_grad_hook(GradHook hook) const {
  auto& impl = checked(impl_);
  if (impl.grad_fn) error("register_post_accumulate_grad_hook: only leaf tensors accumulate gradients");
  impl.post_accumulate_hooks.push_back(std::move(hook));
}

// ---- in place

namespace {
void check_inplace(const Tensor& t, const char* op) {
  if (grad_enabled() && t.requires_grad() && t.is_leaf())
    error(op, ": in-place change of a leaf that requires grad (wrap it in fm::NoGradGuard)");
}
}  // namespace

Tensor& Tensor::fill_(double v) {
  check_inplace(*this, "fill_");
  kernels::fill(device(), *this, v);
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  Tensor s = src.expand(shape());
  if (s.device() == device()) {
    kernels::copy(device(), *this, s);
    return *this;
  }
  NoGradGuard ng;
  Tensor moved = s.contiguous().to(dtype()).to(device());
  kernels::copy(device(), *this, moved);
  return *this;
}

// ---- member shorthands for the free functions

Tensor Tensor::matmul(const Tensor& o) const { return fm::matmul(*this, o); }
Tensor Tensor::sum() const { return fm::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return fm::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return fm::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return fm::mean(*this, dims, keepdim); }
Tensor Tensor::exp() const { return fm::exp(*this); }
Tensor Tensor::log() const { return fm::log(*this); }
Tensor Tensor::sqrt() const { return fm::sqrt(*this); }
Tensor Tensor::pow(double p) const { return fm::pow(*this, p); }
Tensor Tensor::abs() const { return fm::abs(*this); }
Tensor Tensor::neg() const { return fm::neg(*this); }

}  // namespace fm

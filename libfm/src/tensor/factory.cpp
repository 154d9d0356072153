#include "fm/factory.h"

#include <cmath>
#include <cstring>

#include "fm/kernels/core.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {
Tensor finish(Tensor t, const TensorOptions& opt) {
  if (opt.requires_grad_) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor empty(const Shape& shape, TensorOptions opt) {
  return finish(make_tensor(shape, opt.dtype_, opt.device_), opt);
}

Tensor full(const Shape& shape, double value, TensorOptions opt) {
  Tensor t = make_tensor(shape, opt.dtype_, opt.device_);
  kernels::fill(opt.device_, t, value);
  return finish(t, opt);
}

Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1.0, opt); }
Tensor scalar_tensor(double value, TensorOptions opt) { return full({}, value, opt); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.options()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.options()); }

Tensor arange(double start, double end, double step, TensorOptions opt) {
  if (step == 0) error("arange: step must be non-zero");
  const double span = (end - start) / step;
  const int64_t n = span > 0 ? int64_t(std::ceil(span - 1e-9)) : 0;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = start + double(i) * step;
  return finish(from_buffer(v.data(), {n}, DType::f64).to(opt.dtype_).to(opt.device_), opt);
}

Tensor arange(double end, TensorOptions opt) { return arange(0.0, end, 1.0, opt); }

Tensor linspace(double start, double end, int64_t steps, TensorOptions opt) {
  if (steps < 0) error("linspace: steps must be non-negative, got ", steps);
  std::vector<double> v(static_cast<size_t>(steps));
  const double step = steps > 1 ? (end - start) / double(steps - 1) : 0.0;
  // Fill from both ends, as PyTorch does, so the last value is exactly `end`.
  for (int64_t i = 0; i < steps; ++i)
    v[size_t(i)] = i < steps / 2 ? start + step * double(i) : end - step * double(steps - 1 - i);
  return finish(from_buffer(v.data(), {steps}, DType::f64).to(opt.dtype_).to(opt.device_), opt);
}

namespace {
Tensor random_tensor(const Shape& shape, const TensorOptions& opt, Generator* gen, kernels::RandomKind kind,
                     double a, double b) {
  Generator& g = gen ? *gen : default_generator();
  Tensor t = make_tensor(shape, opt.dtype_, opt.device_);
  const PhiloxState state = g.reserve(kernels::random_blocks(t.numel(), t.dtype()));
  kernels::random(opt.device_, t, kind, state, a, b);
  return finish(t, opt);
}
}  // namespace

Tensor randn(const Shape& shape, TensorOptions opt, Generator* gen) {
  if (!is_floating(opt.dtype_)) error("randn: dtype must be floating, got ", opt.dtype_);
  return random_tensor(shape, opt, gen, kernels::RandomKind::normal, 0.0, 1.0);
}

Tensor rand(const Shape& shape, TensorOptions opt, Generator* gen) {
  if (!is_floating(opt.dtype_)) error("rand: dtype must be floating, got ", opt.dtype_);
  return random_tensor(shape, opt, gen, kernels::RandomKind::uniform, 0.0, 1.0);
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opt, Generator* gen) {
  if (high <= low) error("randint: empty range [", low, ", ", high, ")");
  return random_tensor(shape, opt, gen, kernels::RandomKind::randint, double(low), double(high));
}

template <class T>
Tensor tensor(const std::vector<T>& values, const Shape& shape, TensorOptions opt) {
  if (shape.numel() != int64_t(values.size()))
    error("tensor: ", values.size(), " values do not fill shape ", shape);
  Tensor t = from_buffer(values.data(), shape, dtype_of<T>::value).to(opt.dtype_).to(opt.device_);
  return finish(t, opt);
}
template Tensor tensor(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<bf16>&, const Shape&, TensorOptions);
template Tensor tensor(const std::vector<f16>&, const Shape&, TensorOptions);

Tensor from_buffer(const void* data, const Shape& shape, DType dtype, Device device) {
  Tensor host = make_tensor(shape, dtype, Device::cpu());
  if (host.nbytes()) std::memcpy(host.data_ptr(), data, host.nbytes());
  return host.to(device);
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device) {
  return from_blob(data, shape, dtype, nullptr, device);
}

Tensor from_blob(void* data, const Shape& shape, DType dtype, std::shared_ptr<void> owner, Device device) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, size_t(shape.numel()) * itemsize(dtype), device);
  impl->storage->owner = std::move(owner);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace fm

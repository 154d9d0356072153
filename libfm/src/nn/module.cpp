#include "fm/nn/module.h"

#include <string>
#include <vector>

#include "fm/autograd.h"
#include "fm/tensor_impl.h"
#include "../common/state_mismatch.h"

namespace fm::nn {

void rebind(const Tensor& dst, const Tensor& src) {
  TensorImpl* d = dst.impl();
  TensorImpl* s = src.impl();
  d->storage = s->storage;
  d->shape = s->shape;
  d->strides = s->strides;
  d->offset = s->offset;
  d->dtype = s->dtype;
}

void Module::check_new_name(const std::string& name) const {
  if (name.empty() || name.find('.') != std::string::npos)
    error("Module: invalid name '", name, "' (must be non-empty, without dots)");
  auto taken = [&](const std::string& n) {
    for (const auto& p : params_)
      if (p.name == n) return true;
    for (const auto& b : buffers_)
      if (b.name == n) return true;
    for (const auto& c : children_)
      if (c.first == n) return true;
    return false;
  };
  if (taken(name)) error("Module: name '", name, "' registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor t, uint32_t tags) {
  check_new_name(name);
  if (!t.defined()) error("Module: parameter '", name, "' is undefined");
  if (!t.is_leaf()) t = t.detach();
  t.requires_grad_(true);
  params_.push_back({name, t, tags});
  return t;
}

void Module::remove_parameter(const std::string& name) {
  for (auto it = params_.begin(); it != params_.end(); ++it)
    if (it->name == name) {
      params_.erase(it);
      return;
    }
  error("Module: no parameter '", name, "' to remove");
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  buffers_.push_back({name, t.detach(), 0});
  return buffers_.back().tensor;
}

void Module::collect(const std::string& prefix, std::vector<NamedTensor>* out, bool buffers) const {
  for (const auto& p : buffers ? buffers_ : params_) out->push_back({prefix + p.name, p.tensor, p.tags});
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out, buffers);
}

std::vector<NamedTensor> Module::named_parameters() const {
  std::vector<NamedTensor> out;
  collect("", &out, false);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.tensor);
  return out;
}

std::vector<NamedTensor> Module::named_buffers() const {
  std::vector<NamedTensor> out;
  collect("", &out, true);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [name, child] : children_) out.emplace_back(name, child.get());
  return out;
}

StateDict Module::state_dict() const {
  StateDict sd;
  for (auto& p : named_parameters()) sd[p.name] = p.tensor;
  for (auto& b : named_buffers()) sd[b.name] = b.tensor;
  return sd;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  const StateDict mine = state_dict();
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it == state.end()) missing.push_back(name);
    else if (it->second.shape() != t.shape())
      mismatched.push_back(name + " (checkpoint " + it->second.shape().str() + ", model " + t.shape().str() + ")");
  }
  for (const auto& [name, t] : state)
    if (!mine.count(name)) unexpected.push_back(name);
  if (!mismatched.empty() || (strict && (!missing.empty() || !unexpected.empty())))
    fm::detail::throw_state_mismatch("load_state_dict", missing, unexpected, mismatched);
  NoGradGuard ng;
  for (const auto& [name, t] : mine) {
    auto it = state.find(name);
    if (it != state.end()) Tensor(t).copy_(it->second);
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::to(Device device) {
  NoGradGuard ng;
  for (auto* list : {&params_, &buffers_})
    for (auto& p : *list) {
      if (p.tensor.device() == device) continue;
      rebind(p.tensor, p.tensor.to(device));
      if (p.tensor.grad().defined()) p.tensor.set_grad(p.tensor.grad().to(device));
    }
  for (auto& c : children_) c.second->to(device);
}

void Module::to(DType dtype) {
  if (!is_floating(dtype)) error("Module::to: parameters need a floating dtype, got ", dtype);
  NoGradGuard ng;
  for (auto* list : {&params_, &buffers_})
    for (auto& p : *list) {
      if (!is_floating(p.tensor.dtype()) || p.tensor.dtype() == dtype) continue;
      rebind(p.tensor, p.tensor.to(dtype));
      if (p.tensor.grad().defined()) p.tensor.set_grad(p.tensor.grad().to(dtype));
    }
  for (auto& c : children_) c.second->to(dtype);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& p : named_parameters()) n += p.tensor.numel();
  return n;
}

void Module::zero_grad() {
  NoGradGuard ng;
  for (auto& p : named_parameters())
    if (p.tensor.grad().defined()) p.tensor.grad().zero_();
}

}  // namespace fm::nn

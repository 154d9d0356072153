#include "fm/optim/ema.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/kernels/optim.h"
#include "state_check.h"

namespace fm::optim {
namespace {
// Frozen parameters do not change, so the EMA does not keep them (a LoRA
// run's EMA is its adapters' only).
std::vector<nn::NamedTensor> trainable(const nn::Module& m) {
  std::vector<nn::NamedTensor> out;
  for (nn::NamedTensor& p : m.named_parameters())
    if (p.tensor.requires_grad()) out.push_back(std::move(p));
  return out;
}
}  // namespace

EMA::EMA(const nn::Module& m, double decay) : decay_(decay) {
  FM_CHECK(decay >= 0 && decay <= 1, "EMA: decay must be in [0, 1], got ", decay);
  NoGradGuard ng;
  for (const nn::NamedTensor& p : trainable(m)) {
    FM_CHECK(p.tensor.dtype() == DType::f32 || p.tensor.dtype() == DType::f64, "EMA: parameter '", p.name, "' is ",
             p.tensor.dtype(), "; the EMA keeps float32 or float64 weights");
    shadow_.push_back({p.name, p.tensor.detach().clone(), p.tags});
  }
}

std::vector<nn::NamedTensor> EMA::matching_parameters(const nn::Module& m, const char* op) const {
  std::vector<nn::NamedTensor> params = trainable(m);
  bool same = params.size() == shadow_.size();
  for (size_t i = 0; same && i < params.size(); ++i)
    same = params[i].name == shadow_[i].name && params[i].tensor.shape() == shadow_[i].tensor.shape() &&
           params[i].tensor.dtype() == shadow_[i].tensor.dtype() &&
           params[i].tensor.device() == shadow_[i].tensor.device();
  FM_CHECK(same, "EMA::", op, ": the module's parameters differ from those the EMA was made from");
  return params;
}

void EMA::update(const nn::Module& m, int64_t step) {
  const double warm = (1.0 + double(step)) / (10.0 + double(step));
  const double keep = decay_;
  decay_ = std::min(decay_, warm);
  update(m);
  decay_ = keep;
}

void EMA::swap(nn::Module& m) {
  NoGradGuard ng;
  const std::vector<nn::NamedTensor> params = matching_parameters(m, "swap");
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor held = params[i].tensor.clone();
    Tensor(params[i].tensor).copy_(shadow_[i].tensor);
    Tensor(shadow_[i].tensor).copy_(held);
  }
}

void EMA::update(const nn::Module& m) {
  NoGradGuard ng;
  const std::vector<nn::NamedTensor> params = matching_parameters(m, "update");
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& s = shadow_[i].tensor;
    const Tensor p = params[i].tensor.contiguous();
    kernels::ema_update(s.device(), s.view({s.numel()}), p.view({p.numel()}), decay_);
  }
}

void EMA::copy_to(nn::Module& m) const {
  NoGradGuard ng;
  const std::vector<nn::NamedTensor> params = matching_parameters(m, "copy_to");
  for (size_t i = 0; i < params.size(); ++i) Tensor(params[i].tensor).copy_(shadow_[i].tensor);
}

nn::StateDict EMA::state_dict() const {
  nn::StateDict sd;
  for (const nn::NamedTensor& s : shadow_) sd[s.name] = s.tensor;
  return sd;
}

void EMA::load_state_dict(const nn::StateDict& state) {
  std::map<std::string, Shape> expected;
  for (const nn::NamedTensor& s : shadow_) expected[s.name] = s.tensor.shape();
  detail::check_state_dict("EMA::load_state_dict", expected, state);
  NoGradGuard ng;
  for (const nn::NamedTensor& s : shadow_) Tensor(s.tensor).copy_(state.at(s.name));
}

}  // namespace fm::optim

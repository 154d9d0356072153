#include "fm/optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/tensor_impl.h"
#include "layout.h"
#include "state_check.h"

namespace fm::optim {

using detail::padding_between;
using detail::span_from;

std::vector<ParamGroup> default_groups(const nn::Module& m, double lr, double weight_decay) {
  ParamGroup decay{{}, lr, weight_decay}, no_decay{{}, lr, 0.0};
  for (auto& p : m.named_parameters()) {
    if (!p.tensor.requires_grad()) continue;  // frozen
    (p.tags & nn::kNoDecay ? no_decay : decay).params.push_back(p);
  }
  std::vector<ParamGroup> groups;
  for (ParamGroup* g : {&decay, &no_decay})
    if (!g->params.empty()) groups.push_back(std::move(*g));
  return groups;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups, std::vector<std::string> state_names, const char* name)
    : groups_(std::move(groups)), state_names_(std::move(state_names)), name_(name) {
  std::set<std::string> names;
  size_t count = 0;
  for (const ParamGroup& g : groups_) {
    FM_CHECK(g.lr >= 0 && g.weight_decay >= 0 && g.lr_scale >= 0, name_,
             ": a group's lr, weight_decay and lr_scale must be >= 0, got ", g.lr, ", ", g.weight_decay, ", ",
             g.lr_scale);
    for (const nn::NamedTensor& p : g.params) {
      FM_CHECK(!p.name.empty() && names.insert(p.name).second, name_, ": parameter name '", p.name,
               "' is empty or appears twice");
      const Tensor& t = p.tensor;
      FM_CHECK(t.defined(), name_, ": parameter '", p.name, "' is undefined");
      FM_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, name_, ": parameter '", p.name, "' is ", t.dtype(),
               "; optimizers update float32 or float64 (master) weights");
      FM_CHECK(t.is_contiguous() && t.is_leaf(), name_, ": parameter '", p.name, "' must be a contiguous leaf");
      ++count;
    }
  }
  FM_CHECK(count > 0, name_, ": no parameters to optimize");
  build_runs();
}

void Optimizer::build_runs() {
  // Where every parameter lies, to tell a padding gap from one holding
  // another parameter, and to refuse parameters that share memory.
  struct Place {
    const Storage* storage;
    int64_t start, end;
    const std::string* name;
    bool operator<(const Place& o) const {
      return storage != o.storage ? std::less<const Storage*>()(storage, o.storage) : start < o.start;
    }
  };
  std::vector<Place> places;
  for (const ParamGroup& g : groups_)
    for (const nn::NamedTensor& p : g.params)
      if (p.tensor.numel() > 0)
        places.push_back({p.tensor.impl()->storage.get(), p.tensor.storage_offset(),
                          p.tensor.storage_offset() + p.tensor.numel(), &p.name});
  std::sort(places.begin(), places.end());
  for (size_t i = 1; i < places.size(); ++i)
    FM_CHECK(places[i].storage != places[i - 1].storage || places[i].start >= places[i - 1].end, name_,
             ": parameters '", *places[i - 1].name, "' and '", *places[i].name, "' share memory");
  auto gap_is_padding = [&](const Tensor& a, const Tensor& b) {
    const Place end_of_a{a.impl()->storage.get(), a.storage_offset() + a.numel(), 0, nullptr};
    auto next = std::lower_bound(places.begin(), places.end(), end_of_a);
    return next->start >= b.storage_offset();  // b itself is found when nothing lies between
  };

  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    // Members in address order, so neighbours are found however the group lists them.
    const std::vector<nn::NamedTensor>& params = groups_[gi].params;
    std::vector<Tensor> tensors;
    for (const nn::NamedTensor& p : params) tensors.push_back(p.tensor);
    for (size_t i : detail::address_order(tensors)) {
      const Tensor& t = params[i].tensor;
      int64_t pad = -1;
      if (!runs_.empty() && runs_.back().group == gi && t.numel() > 0) {
        const Tensor& prev = member(runs_.back(), runs_.back().members.size() - 1);
        if (prev.numel() > 0) pad = padding_between(prev, t);
        if (pad >= 0 && !gap_is_padding(prev, t)) pad = -1;
      }
      if (pad < 0) {
        runs_.push_back(Run{gi, {}, {}, 0, {}});
        pad = 0;
      }
      Run& r = runs_.back();
      r.members.push_back(i);
      r.starts.push_back(r.length + pad);
      r.length += pad + t.numel();
    }
  }
  for (Run& r : runs_)
    for (size_t k = 0; k < state_names_.size(); ++k) r.state.push_back(zeros({r.length}, member(r, 0).options()));
}

std::vector<Optimizer::Segment> Optimizer::segments() const {
  // The gradient of member i (undefined when there is none), after checking
  // that the parameter still matches its state (a model moved or converted
  // after the optimizer was made does not) and the gradient the parameter.
  auto checked_grad = [&](const Run& r, size_t i) {
    const nn::NamedTensor& p = groups_[r.group].params[r.members[i]];
    const Tensor& t = p.tensor;
    if (!r.state.empty() && (t.dtype() != r.state[0].dtype() || t.device() != r.state[0].device()))
      error(name_, ": parameter '", p.name, "' is now ", t.dtype(), " on ", t.device(), ", its state ",
            r.state[0].dtype(), " on ", r.state[0].device(), "; make the optimizer after moving the model");
    FM_CHECK(t.is_contiguous(), name_, ": parameter '", p.name, "' is no longer contiguous");
    Tensor g = t.grad();
    if (g.defined() && (g.dtype() != t.dtype() || g.device() != t.device()))
      error(name_, ": gradient of '", p.name, "' is ", g.dtype(), " on ", g.device(), ", the parameter ", t.dtype(),
            " on ", t.device());
    return g;
  };
  std::vector<Segment> out;
  for (const Run& r : runs_) {
    const size_t n = r.members.size();
    size_t i = 0;
    while (i < n) {
      Tensor g = checked_grad(r, i);
      if (!g.defined() || member(r, i).numel() == 0) {
        ++i;
        continue;
      }
      // Extend while the next parameter and its gradient both follow with the
      // padding recorded for the run.
      size_t j = i + 1;
      for (Tensor prev = g; j < n && g.is_contiguous(); ++j) {
        Tensor next = checked_grad(r, j);
        const int64_t pad = r.starts[j] - (r.starts[j - 1] + member(r, j - 1).numel());
        if (!next.defined() || padding_between(prev, next) != pad ||
            padding_between(member(r, j - 1), member(r, j)) != pad)
          break;
        prev = next;
      }
      const int64_t length = r.starts[j - 1] + member(r, j - 1).numel() - r.starts[i];
      out.push_back({&r, i, j, g.is_contiguous() ? span_from(g, length) : g});
      i = j;
    }
  }
  return out;
}

void Optimizer::step() {
  NoGradGuard ng;
  const std::vector<Segment> segs = segments();  // checks every gradient before anything changes
  ++step_;
  last_step_calls_ = 0;
  for (const Segment& s : segs) {
    const Run& r = *s.run;
    const int64_t start = r.starts[s.first], length = s.grad.numel();
    Tensor grad = s.grad.is_contiguous() ? s.grad : s.grad.contiguous().view({length});
    std::vector<Tensor> state;
    for (const Tensor& buffer : r.state) state.push_back(buffer.narrow(0, start, length));
    update(groups_[r.group], span_from(member(r, s.first), length), grad, state);
    ++last_step_calls_;
  }
}

void Optimizer::zero_grad() {
  NoGradGuard ng;
  for (const Segment& s : segments()) Tensor(s.grad).zero_();
}

void Optimizer::set_lr(double lr) {
  FM_CHECK(lr >= 0, name_, "::set_lr: learning rate must be >= 0, got ", lr);
  for (ParamGroup& g : groups_) g.lr = lr * g.lr_scale;
}

Tensor Optimizer::state_view(const Run& r, size_t k, size_t i) const {
  const Tensor& p = member(r, i);
  return r.state[k].narrow(0, r.starts[i], p.numel()).view(p.shape());
}

std::map<std::string, Tensor> Optimizer::state_dict() const {
  std::map<std::string, Tensor> sd;
  for (const Run& r : runs_)
    for (size_t k = 0; k < state_names_.size(); ++k)
      for (size_t i = 0; i < r.members.size(); ++i)
        sd[state_names_[k] + "." + groups_[r.group].params[r.members[i]].name] = state_view(r, k, i);
  sd["step"] = scalar_tensor(double(step_), DType::i64);
  return sd;
}

void Optimizer::load_state_dict(const std::map<std::string, Tensor>& state) {
  const std::map<std::string, Tensor> mine = state_dict();
  std::map<std::string, Shape> expected;
  for (const auto& [name, t] : mine) expected[name] = t.shape();
  detail::check_state_dict((std::string(name_) + "::load_state_dict").c_str(), expected, state);
  const double step = state.at("step").item();
  FM_CHECK(step >= 0 && step == std::floor(step), name_, "::load_state_dict: step must be a whole number >= 0, got ",
           step);
  NoGradGuard ng;
  for (const auto& [name, t] : mine)
    if (name != "step") Tensor(t).copy_(state.at(name));
  step_ = int64_t(step);
}

std::vector<std::vector<std::string>> Optimizer::fused_runs() const {
  std::vector<std::vector<std::string>> out;
  for (const Run& r : runs_) {
    out.emplace_back();
    for (size_t i : r.members) out.back().push_back(groups_[r.group].params[i].name);
  }
  return out;
}

}  // namespace fm::optim

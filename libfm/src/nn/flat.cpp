#include "fm/nn/flat.h"

#include <algorithm>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/tensor_impl.h"

namespace fm::nn {

FlatParameters flatten_parameters(Module& m) {
  constexpr int64_t kAlign = 16;
  NoGradGuard ng;
  FlatParameters flat;
  std::vector<NamedTensor> params;
  for (NamedTensor& p : m.named_parameters())
    if (p.tensor.requires_grad()) params.push_back(std::move(p));  // frozen ones keep their own storage, no gradient
  std::stable_sort(params.begin(), params.end(), [](const NamedTensor& a, const NamedTensor& b) { return a.tags < b.tags; });
  for (const auto& p : params) {
    auto it = std::find_if(flat.groups.begin(), flat.groups.end(), [&](const FlatGroup& g) {
      return g.dtype == p.tensor.dtype() && g.device == p.tensor.device();
    });
    if (it == flat.groups.end()) {
      flat.groups.push_back({p.tensor.dtype(), p.tensor.device(), Tensor(), Tensor(), {}});
      it = flat.groups.end() - 1;
    }
    const int64_t offset = it->slots.empty() ? 0 : (it->slots.back().offset + it->slots.back().numel + kAlign - 1) / kAlign * kAlign;
    it->slots.push_back({p.name, p.tensor, offset, p.tensor.numel(), p.tags});
  }
  for (auto& g : flat.groups) {
    const int64_t total = g.slots.empty() ? 0 : g.slots.back().offset + g.slots.back().numel;
    g.data = zeros({total}, TensorOptions(g.dtype).device(g.device));
    g.grad = zeros({total}, TensorOptions(g.dtype).device(g.device));
    for (auto& s : g.slots) {
      const Shape shape = s.param.shape();
      Tensor view = g.data.narrow(0, s.offset, s.numel).view(shape);
      view.copy_(s.param);
      rebind(s.param, view);
      s.param.set_grad(g.grad.narrow(0, s.offset, s.numel).view(shape));
    }
  }
  return flat;
}

}  // namespace fm::nn

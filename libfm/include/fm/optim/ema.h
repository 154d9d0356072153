#pragma once
// An exponential moving average of a module's parameters (the EMA weights
// of diffusion training). The shadow copies are named as the parameters.
#include "fm/nn/module.h"

namespace fm::optim {

class EMA {
 public:
  // The shadow starts as a copy of m's trainable parameters (frozen ones,
  // requires_grad false, are not kept).
  EMA(const nn::Module& m, double decay);
  // shadow = decay * shadow + (1 - decay) * param, for every parameter.
  void update(const nn::Module& m);
  // The same with diffusers' warm-up: decay min(decay, (1 + step) / (10 + step))
  // at update number `step` (from 0), so early weights do not linger in short runs.
  void update(const nn::Module& m, int64_t step);
  // Exchanges the shadow and m's parameters (twice restores both): evaluation
  // with the EMA weights, without a third copy.
  void swap(nn::Module& m);
  // Copies the shadow weights into m's parameters (e.g. for sampling).
  void copy_to(nn::Module& m) const;
  double decay() const { return decay_; }

  // Parameter name -> shadow tensor (sharing memory with the shadow).
  nn::StateDict state_dict() const;
  // Copies a saved shadow in; names and shapes must match both ways (all
  // mismatches listed in one fm::Error, nothing changed on error).
  void load_state_dict(const nn::StateDict& state);

 private:
  // m's parameters, checked to match the shadow's names and shapes.
  std::vector<nn::NamedTensor> matching_parameters(const nn::Module& m, const char* op) const;

  double decay_;
  std::vector<nn::NamedTensor> shadow_;  // in m.named_parameters() order
};

}  // namespace fm::optim

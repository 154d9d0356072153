#pragma once
// SGD with momentum, dampening, Nesterov momentum and (L2, coupled) weight
// decay, exactly as torch.optim.SGD: fused, one kernel call per run of flat
// parameters.
#include "fm/optim/optimizer.h"

namespace fm::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;  // needs momentum > 0 and no dampening
};

class SGD : public Optimizer {
 public:
  // Each group carries its own lr and weight_decay; options.lr and
  // options.weight_decay are not used here.
  SGD(std::vector<ParamGroup> groups, const SGDOptions& options);
  // default_groups(m, options.lr, options.weight_decay).
  SGD(const nn::Module& m, const SGDOptions& options);
  const SGDOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              const std::vector<Tensor>& state) override;

 private:
  SGDOptions options_;
};

}  // namespace fm::optim

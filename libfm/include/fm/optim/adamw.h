#pragma once
// AdamW with decoupled weight decay, exactly as torch.optim.AdamW: fused,
// one kernel call per run of flat parameters.
#include "fm/optim/optimizer.h"

namespace fm::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class AdamW : public Optimizer {
 public:
  // Each group carries its own lr and weight_decay; options.lr and
  // options.weight_decay are not used here.
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options);
  // default_groups(m, options.lr, options.weight_decay).
  AdamW(const nn::Module& m, const AdamWOptions& options);
  const AdamWOptions& options() const { return options_; }

 protected:
  void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
              const std::vector<Tensor>& state) override;

 private:
  AdamWOptions options_;
};

}  // namespace fm::optim

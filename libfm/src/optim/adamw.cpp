#include "fm/optim/adamw.h"

#include "fm/kernels/optim.h"

namespace fm::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& options)
    : Optimizer(std::move(groups), {"exp_avg", "exp_avg_sq"}, "AdamW"), options_(options) {
  FM_CHECK(options.beta1 >= 0 && options.beta1 < 1 && options.beta2 >= 0 && options.beta2 < 1,
           "AdamW: betas must be in [0, 1), got ", options.beta1, " and ", options.beta2);
  FM_CHECK(options.eps >= 0, "AdamW: eps must be >= 0, got ", options.eps);
}

AdamW::AdamW(const nn::Module& m, const AdamWOptions& options)
    : AdamW(default_groups(m, options.lr, options.weight_decay), options) {}

void AdamW::update(const ParamGroup& group, const Tensor& param, const Tensor& grad, const std::vector<Tensor>& state) {
  kernels::AdamWArgs args;
  args.lr = group.lr;
  args.beta1 = options_.beta1;
  args.beta2 = options_.beta2;
  args.eps = options_.eps;
  args.weight_decay = group.weight_decay;
  args.step = step_count();
  kernels::adamw_step(param.device(), param, grad, state[0], state[1], args);
}

}  // namespace fm::optim

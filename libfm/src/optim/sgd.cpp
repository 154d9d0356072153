#include "fm/optim/sgd.h"

#include "fm/kernels/optim.h"

namespace fm::optim {

namespace {
// The state SGD keeps: a momentum buffer only when there is momentum.
std::vector<std::string> sgd_state(const SGDOptions& o) {
  if (o.momentum == 0) return {};
  return {"momentum"};
}
}  // namespace

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& options)
    : Optimizer(std::move(groups), sgd_state(options), "SGD"), options_(options) {
  FM_CHECK(options.momentum >= 0, "SGD: momentum must be >= 0, got ", options.momentum);
  FM_CHECK(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
           "SGD: nesterov momentum needs momentum > 0 and zero dampening, got momentum ", options.momentum,
           " and dampening ", options.dampening);
}

SGD::SGD(const nn::Module& m, const SGDOptions& options)
    : SGD(default_groups(m, options.lr, options.weight_decay), options) {}

void SGD::update(const ParamGroup& group, const Tensor& param, const Tensor& grad, const std::vector<Tensor>& state) {
  kernels::SGDArgs args;
  args.lr = group.lr;
  args.momentum = options_.momentum;
  args.dampening = options_.dampening;
  args.weight_decay = group.weight_decay;
  args.nesterov = options_.nesterov;
  args.first_step = step_count() == 1;
  kernels::sgd_step(param.device(), param, grad, state.empty() ? Tensor() : state[0], args);
}

}  // namespace fm::optim

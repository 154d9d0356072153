#pragma once
// fm::optim::Optimizer: the base of the fused optimizers. Parameters come in
// groups with their own learning rate and weight decay. Parameters of a
// group that lie one after another in one storage (as nn::flatten_parameters
// packs them: contiguous, gaps of fewer than 16 elements, no other parameter
// of the optimizer between) form a run: its optimizer state is one flat
// buffer and, when the gradients are laid out the same way, step() updates
// the whole run, gaps included, with one kernel call. The gaps must be
// padding that is zero in parameter and gradient (zero stays zero under
// these updates); memory outside the optimizer placed there would be updated
// too. Anything else is updated one parameter per call.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fm/nn/module.h"
#include "fm/tensor.h"

namespace fm::optim {

struct ParamGroup {
  std::vector<nn::NamedTensor> params;  // names key the optimizer state
  double lr = 0;
  double weight_decay = 0;
  double lr_scale = 1;  // set_lr(lr) gives this group lr * lr_scale
};

// Parameters that require grad, split by tags (never by index or name):
// those tagged nn::kNoDecay in a group without weight decay, the others in a
// group with `weight_decay`. Empty groups are left out.
std::vector<ParamGroup> default_groups(const nn::Module& m, double lr, double weight_decay);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter that has a gradient (those without one are
  // skipped, as in PyTorch). Runs without recording autograd history.
  void step();
  // Zeroes the gradients in place, keeping their buffers (flat ones too).
  void zero_grad();
  // Sets every group's learning rate to lr * lr_scale (schedules call this).
  void set_lr(double lr);
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  // Steps taken. One count serves every parameter (AdamW's bias correction,
  // SGD's first momentum step); PyTorch counts per parameter, which differs
  // only for a parameter that had no gradient at some steps.
  int64_t step_count() const { return step_; }

  // "<state>.<param name>" views of the optimizer state (e.g. exp_avg.fc.weight)
  // and "step", a 0-dim int64 tensor. The views share memory with the state.
  std::map<std::string, Tensor> state_dict() const;
  // Copies a state_dict in. Names and shapes must match both ways; every
  // mismatch is listed in one fm::Error and nothing changes when there is any.
  void load_state_dict(const std::map<std::string, Tensor>& state);

  // The parameter names of each run, for inspection and tests.
  std::vector<std::vector<std::string>> fused_runs() const;
  // Kernel calls made by the last step() (one per run when gradients are flat).
  int64_t last_step_calls() const { return last_step_calls_; }

 protected:
  // `state_names` are the per-parameter state tensors the subclass keeps
  // ("exp_avg", ...), each zero-initialised with the parameter's shape.
  Optimizer(std::vector<ParamGroup> groups, std::vector<std::string> state_names, const char* name);
  // Updates one contiguous stretch of parameters of `group`: param, grad and
  // each state tensor (in state_names order) are 1-D views of equal length.
  virtual void update(const ParamGroup& group, const Tensor& param, const Tensor& grad,
                      const std::vector<Tensor>& state) = 0;

 private:
  struct Run {
    size_t group = 0;
    std::vector<size_t> members;  // indices into the group's params
    std::vector<int64_t> starts;  // element offset of each member from the run's start
    int64_t length = 0;           // elements, padding gaps included
    std::vector<Tensor> state;    // one flat buffer of `length` per state name
  };
  // A stretch of a run whose gradients are laid out like its parameters.
  struct Segment {
    const Run* run;
    size_t first, last;  // members [first, last)
    Tensor grad;         // 1-D span, or the one member's non-contiguous grad
  };

  void build_runs();
  std::vector<Segment> segments() const;
  const Tensor& member(const Run& r, size_t i) const { return groups_[r.group].params[r.members[i]].tensor; }
  Tensor state_view(const Run& r, size_t k, size_t i) const;

  std::vector<ParamGroup> groups_;
  std::vector<std::string> state_names_;
  std::vector<Run> runs_;
  const char* name_;  // "AdamW", ... for messages
  int64_t step_ = 0;
  int64_t last_step_calls_ = 0;
};

}  // namespace fm::optim

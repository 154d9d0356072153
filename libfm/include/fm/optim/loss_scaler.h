#pragma once
// A dynamic loss scaler for f16 training, with the rule of PyTorch's
// torch.amp.GradScaler: the loss is multiplied by scale() before backward so
// small f16 gradients do not underflow; the gradients are divided by it
// again before clipping and the update. A step whose gradients hold an Inf
// or NaN is skipped and the scale multiplied by `backoff`; after `interval`
// good steps in a row it is multiplied by `growth`.
#include <cstdint>
#include <map>
#include <string>

#include "fm/tensor.h"

namespace fm::optim {

struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth = 2.0;
  double backoff = 0.5;
  int64_t interval = 2000;
};

class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions o = {});
  double scale() const { return scale_; }
  // After a step's gradients were checked: found_inf says whether they held
  // an Inf or NaN (the step is then skipped by the caller).
  void update(bool found_inf);
  int64_t good_steps() const { return good_; }

  // "scale" and "good_steps" (f64 scalars), as a checkpoint keeps them.
  std::map<std::string, Tensor> state_dict() const;
  // Errors name the missing or malformed entry; nothing changes on error.
  void load_state_dict(const std::map<std::string, Tensor>& state);

 private:
  LossScalerOptions o_;
  double scale_;
  int64_t good_ = 0;
};

}  // namespace fm::optim

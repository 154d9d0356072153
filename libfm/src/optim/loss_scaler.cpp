#include "fm/optim/loss_scaler.h"

#include <cmath>

#include "fm/error.h"
#include "fm/factory.h"

namespace fm::optim {

LossScaler::LossScaler(LossScalerOptions o) : o_(o), scale_(o.init_scale) {
  FM_CHECK(o.init_scale > 0 && std::isfinite(o.init_scale), "LossScaler: init_scale must be positive, got ", o.init_scale);
  FM_CHECK(o.growth > 1, "LossScaler: growth must exceed 1, got ", o.growth);
  FM_CHECK(o.backoff > 0 && o.backoff < 1, "LossScaler: backoff must be in (0, 1), got ", o.backoff);
  FM_CHECK(o.interval >= 1, "LossScaler: interval must be at least 1, got ", o.interval);
}

void LossScaler::update(bool found_inf) {
  if (found_inf) {
    scale_ *= o_.backoff;
    good_ = 0;
  } else if (++good_ == o_.interval) {
    scale_ *= o_.growth;
    good_ = 0;
  }
}

std::map<std::string, Tensor> LossScaler::state_dict() const {
  return {{"scale", scalar_tensor(scale_, DType::f64)}, {"good_steps", scalar_tensor(double(good_), DType::f64)}};
}

void LossScaler::load_state_dict(const std::map<std::string, Tensor>& state) {
  double v[2];
  const char* names[2] = {"scale", "good_steps"};
  for (int i = 0; i < 2; ++i) {
    const auto it = state.find(names[i]);
    FM_CHECK(it != state.end(), "LossScaler::load_state_dict: no '", names[i], "' entry");
    FM_CHECK(it->second.numel() == 1, "LossScaler::load_state_dict: '", names[i], "' must hold one value, has ",
             it->second.numel());
    v[i] = it->second.to(DType::f64).item<double>();
  }
  FM_CHECK(v[0] > 0 && std::isfinite(v[0]), "LossScaler::load_state_dict: 'scale' must be positive, got ", v[0]);
  FM_CHECK(v[1] >= 0 && v[1] < double(o_.interval) && v[1] == std::floor(v[1]),
           "LossScaler::load_state_dict: 'good_steps' must be an integer in [0, ", o_.interval, "), got ", v[1]);
  scale_ = v[0];
  good_ = int64_t(v[1]);
}

}  // namespace fm::optim

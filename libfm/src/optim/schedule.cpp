#include "fm/optim/schedule.h"

#include <cmath>

#include "fm/error.h"

namespace fm::optim {

void LRSchedule::validate() const {
  FM_CHECK(kind == "constant" || kind == "cosine" || kind == "linear", "LRSchedule: unknown kind '", kind,
           "' (constant, cosine or linear)");
  FM_CHECK(std::isfinite(lr) && lr >= 0, "LRSchedule: lr must be finite and >= 0, got ", lr);
  FM_CHECK(warmup_steps >= 0, "LRSchedule: warmup_steps must be >= 0, got ", warmup_steps);
  if (kind == "constant") return;
  FM_CHECK(min_lr >= 0 && min_lr <= lr, "LRSchedule: min_lr must be in [0, lr = ", lr, "], got ", min_lr);
  FM_CHECK(max_steps > warmup_steps, "LRSchedule: ", kind, " decay needs max_steps > warmup_steps, got ", max_steps,
           " and ", warmup_steps);
}

double LRSchedule::at(int64_t step) const {
  validate();
  FM_CHECK(step >= 0, "LRSchedule::at: step must be >= 0, got ", step);
  if (step < warmup_steps) return lr * double(step + 1) / double(warmup_steps);
  if (kind == "constant") return lr;
  if (step >= max_steps) return min_lr;
  const double progress = double(step - warmup_steps) / double(max_steps - warmup_steps);
  const double coeff = kind == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return min_lr + coeff * (lr - min_lr);
}

}  // namespace fm::optim

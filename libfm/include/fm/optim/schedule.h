#pragma once
// Learning-rate schedules as in nanoGPT: linear warmup, then cosine or
// linear decay to min_lr at max_steps, and min_lr after. Call
// optimizer.set_lr(schedule.at(step)) before each step.
#include <cstdint>
#include <string>

namespace fm::optim {

struct LRSchedule {
  std::string kind = "cosine";  // constant | cosine | linear
  double lr = 0, min_lr = 0;
  int64_t warmup_steps = 0, max_steps = 0;

  // lr * (step + 1) / warmup_steps for step < warmup_steps; then lr for
  // "constant", or the decay from lr (at warmup_steps) to min_lr (at
  // max_steps); min_lr from max_steps on. Throws fm::Error on bad settings
  // (unknown kind, negative values, min_lr > lr, max_steps <= warmup_steps
  // for a decaying schedule) or a negative step.
  double at(int64_t step) const;
  void validate() const;
};

}  // namespace fm::optim

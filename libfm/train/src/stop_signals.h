#pragma once
// SIGTERM and SIGINT during `fm train`: the first asks the loop to stop at
// the end of the step in progress (a checkpoint, then a clean return), as a
// scheduler's preemption notice or a Ctrl-C expects; a second one ends the
// process at once (atomic checkpoint writes keep the previous checkpoint).
namespace fm::train {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal number received (SIGTERM, SIGINT), or 0.
  int pending() const;
};

}  // namespace fm::train

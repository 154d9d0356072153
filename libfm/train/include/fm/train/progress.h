#pragma once
// The console progress line and throughput figures of a training run.
#include <chrono>
#include <cstdint>
#include <string>

#include "fm/device.h"
#include "fm/dtype.h"

namespace fm::train {

// GFLOP/s a square GEMM reaches on `device` in `dtype` (the compute dtype of
// the run's matrix products; on the CPU with the current thread count): the
// peak that MFU is measured against.
double measure_peak_gflops(Device device = Device::cpu(), DType dtype = DType::f32);

class Progress {
 public:
  // unit: "tok" or a sample noun ("img", "samples"); flops_per_unit 0: no MFU.
  Progress(int64_t total_steps, int64_t start_step, std::string unit, double flops_per_unit, double peak_gflops);
  // Formats "step 120/2000 | loss 2.3456 | lr 3.00e-04 | 12345 tok/s | MFU 12.3% | ETA 3m12s"
  // for the steps since the previous call.
  std::string line(int64_t step, double loss, double lr, int64_t units_since_last);
  double units_per_s() const { return units_per_s_; }

 private:
  int64_t total_, last_step_;
  std::string unit_;
  double flops_per_unit_, peak_gflops_, units_per_s_ = 0;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace fm::train

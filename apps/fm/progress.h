#pragma once
// The console progress line and throughput figures of a training run.
#include <chrono>
#include <cstdint>
#include <string>

#include "fm/device.h"
#include "fm/dtype.h"

namespace fm::app {

// FLOPs of one token's forward + backward through a GPT: 6 per parameter plus
// attention's score and value products (as nanoGPT and llm.c count them).
double gpt_flops_per_token(double params, int64_t n_layer, int64_t block_size, int64_t d_model);

// GFLOP/s a square GEMM reaches on `device` in `dtype` (the compute dtype of
// the run's matrix products; on the CPU with the current thread count): the
// peak that MFU is measured against.
double measure_peak_gflops(Device device = Device::cpu(), DType dtype = DType::f32);

class Progress {
 public:
  Progress(int64_t total_steps, int64_t start_step, double flops_per_token, double peak_gflops);
  // Formats "step 120/2000 | loss 2.3456 | lr 3.00e-04 | 12345 tok/s | MFU 12.3% | ETA 3m12s"
  // for the steps since the previous call.
  std::string line(int64_t step, double loss, double lr, int64_t tokens_since_last);
  double tokens_per_s() const { return tokens_per_s_; }

 private:
  int64_t total_, last_step_;
  double flops_per_token_, peak_gflops_, tokens_per_s_ = 0;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace fm::app

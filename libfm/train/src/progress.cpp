#include "fm/train/progress.h"

#include <algorithm>
#include <cstdio>

#include "fm/factory.h"
#include "fm/ops/linalg.h"

namespace fm::train {

double measure_peak_gflops(Device device, DType dtype) {
  // The fastest of a few 2048^3 products (8192^3 on a GPU): smaller ones stay
  // below what training's larger GEMMs reach (MFU above 100% otherwise).
  const int64_t n = device.is_cpu() ? 2048 : 8192;
  Generator gen(0);  // its own stream: the run's random state stays untouched
  Tensor a = randn({n, n}, {}, &gen).to(dtype).to(device), b = randn({n, n}, {}, &gen).to(dtype).to(device);
  double best = 1e30;
  for (int i = 0; i < 4; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    matmul(a, b).narrow(0, 0, 1).narrow(1, 0, 1).item();  // item() waits for the device
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * double(n * n * n) / best / 1e9;
}

Progress::Progress(int64_t total_steps, int64_t start_step, std::string unit, double flops_per_unit,
                   double peak_gflops)
    : total_(total_steps), last_step_(start_step), unit_(std::move(unit)), flops_per_unit_(flops_per_unit),
      peak_gflops_(peak_gflops), last_(std::chrono::steady_clock::now()) {}

std::string Progress::line(int64_t step, double loss, double lr, int64_t units_since_last) {
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - last_).count();
  const double step_s = step > last_step_ ? secs / double(step - last_step_) : 0;
  units_per_s_ = secs > 0 ? double(units_since_last) / secs : 0;
  const double mfu = peak_gflops_ > 0 ? units_per_s_ * flops_per_unit_ / (peak_gflops_ * 1e9) : 0;
  const int64_t eta = int64_t(step_s * double(total_ - step));
  last_ = now;
  last_step_ = step;
  char mfu_text[32] = "";
  if (flops_per_unit_ > 0) std::snprintf(mfu_text, sizeof mfu_text, " | MFU %.1f%%", 100 * mfu);
  char buf[256];
  std::snprintf(buf, sizeof buf, "step %6lld/%lld | loss %.4f | lr %.2e | %.0f %s/s%s | ETA %lldm%02llds",
                (long long)step, (long long)total_, loss, lr, units_per_s_, unit_.c_str(), mfu_text,
                (long long)(eta / 60), (long long)(eta % 60));
  return buf;
}

}  // namespace fm::train

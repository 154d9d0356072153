#include "wait.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "fm/error.h"

namespace fm::dist::detail {

bool poll_until(const std::function<bool()>& done, double timeout_s) {
  const auto start = std::chrono::steady_clock::now();
  auto pause = std::chrono::microseconds(10);
  while (!done()) {
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_s) return false;
    if (waited < 2e-3) continue;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
  return true;
}

void check_contiguous(const Tensor& t, const char* op) {
  if (!t.defined() || !t.is_contiguous()) error("dist::", op, ": expects a defined, contiguous tensor");
}

}  // namespace fm::dist::detail

#include "fm/profile.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>

#include "fm/error.h"
#include "fm/kernels/kernel.h"

namespace fm {
namespace detail {
std::atomic<const KernelProfiler*> kernel_profiler{nullptr};
}  // namespace detail

namespace {
using Clock = std::chrono::steady_clock;

struct Record {
  const char* name;
  Device device;
  void* handle;  // the device timer's, or null: host time
  Clock::time_point t0;
  double host_ms;
};

std::mutex mu;
std::vector<Record> records;
detail::DeviceTimer timers[kNumDeviceTypes];
thread_local int depth = 0;  // slots called from inside a timed slot are not timed again

int begin(const char* name, Device d) {
  if (depth++ > 0) return -1;
  std::lock_guard<std::mutex> lock(mu);
  const auto& t = timers[int(d.type)];
  records.push_back({name, d, t.start ? t.start() : nullptr, Clock::now(), 0.0});
  return int(records.size()) - 1;
}

void end(int token) {
  --depth;
  if (token < 0) return;
  std::lock_guard<std::mutex> lock(mu);
  Record& r = records[size_t(token)];
  if (r.handle) timers[int(r.device.type)].stop(r.handle);
  else r.host_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.t0).count();
}

const detail::KernelProfiler profiler{begin, end};
}  // namespace

void detail::set_device_timer(DeviceType type, DeviceTimer timer) { timers[int(type)] = timer; }

Profile::Profile() {
  const detail::KernelProfiler* none = nullptr;
  if (!detail::kernel_profiler.compare_exchange_strong(none, &profiler))
    error("fm::Profile: another profile is already open");
  std::lock_guard<std::mutex> lock(mu);
  records.clear();
}

Profile::~Profile() {
  if (open_) stop();
}

std::vector<Profile::Row> Profile::stop() {
  if (!open_) error("fm::Profile: stop() called twice");
  open_ = false;
  detail::kernel_profiler.store(nullptr);
  std::lock_guard<std::mutex> lock(mu);
  std::map<std::pair<std::string, std::string>, Row> sums;
  for (Record& r : records) {
    const auto& t = timers[int(r.device.type)];
    const double ms = r.handle ? t.elapsed_ms(r.handle) : r.host_ms;
    if (r.handle) t.release(r.handle);
    Row& row = sums[{r.name, r.device.str()}];
    row.kernel = r.name, row.device = r.device.str();
    row.calls += 1, row.ms += ms;
  }
  records.clear();
  std::vector<Row> rows;
  for (auto& [key, row] : sums) rows.push_back(row);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
  return rows;
}

std::string Profile::table(const std::vector<Row>& rows) {
  double total = 0;
  for (const Row& r : rows) total += r.ms;
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-28s %-8s %8s %11s %7s %10s\n", "kernel", "device", "calls", "total ms", "share",
                "mean us");
  s += line;
  for (const Row& r : rows) {
    std::snprintf(line, sizeof line, "%-28s %-8s %8lld %11.3f %6.1f%% %10.2f\n", r.kernel.c_str(), r.device.c_str(),
                  static_cast<long long>(r.calls), r.ms, total > 0 ? 100.0 * r.ms / total : 0.0,
                  r.calls ? 1000.0 * r.ms / double(r.calls) : 0.0);
    s += line;
  }
  std::snprintf(line, sizeof line, "%-28s %-8s %8s %11.3f\n", "all kernels", "", "", total);
  return s + line;
}

}  // namespace fm

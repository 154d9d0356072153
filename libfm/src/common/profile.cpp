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
  bool ended;
};

// A token is (generation << 32 | index). Opening or stopping a profile starts
// a new generation, so a call still timing on another thread when stop()
// cleared the records ends harmlessly instead of writing into a record that
// is gone (or belongs to the next profile).
std::mutex mu;
std::vector<Record> records;
int64_t generation = 0;
detail::DeviceTimer timers[kNumDeviceTypes];
thread_local int depth = 0;  // slots called from inside a timed slot are not timed again

int64_t begin(const char* name, Device d) {
  if (depth++ > 0) return -1;
  std::lock_guard<std::mutex> lock(mu);
  const auto& t = timers[int(d.type)];
  records.push_back({name, d, t.start ? t.start() : nullptr, Clock::now(), 0.0, false});
  return (generation << 32) | int64_t(records.size() - 1);
}

void end(int64_t token) {
  --depth;
  if (token < 0) return;
  std::lock_guard<std::mutex> lock(mu);
  if ((token >> 32) != generation) return;  // its profile was stopped meanwhile
  Record& r = records[size_t(token & 0xffffffff)];
  if (r.handle) timers[int(r.device.type)].stop(r.handle);
  else r.host_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.t0).count();
  r.ended = true;
}

// Drops every record (the caller holds mu), releasing device timer handles.
void clear_records() {
  for (Record& r : records)
    if (r.handle) timers[int(r.device.type)].release(r.handle);
  records.clear();
  ++generation;
}

const detail::KernelProfiler profiler{begin, end};
}  // namespace

void detail::set_device_timer(DeviceType type, DeviceTimer timer) { timers[int(type)] = timer; }

Profile::Profile() {
  const detail::KernelProfiler* none = nullptr;
  if (!detail::kernel_profiler.compare_exchange_strong(none, &profiler))
    error("fm::Profile: another profile is already open");
  std::lock_guard<std::mutex> lock(mu);
  clear_records();
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
    if (!r.ended) continue;  // still running on another thread: not a whole call
    const auto& t = timers[int(r.device.type)];
    Row& row = sums[{r.name, r.device.str()}];
    row.kernel = r.name, row.device = r.device.str();
    row.calls += 1, row.ms += r.handle ? t.elapsed_ms(r.handle) : r.host_ms;
  }
  clear_records();
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

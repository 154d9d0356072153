#pragma once
// Kernel profiler: while a Profile is open, every kernel-slot call is timed
// (device time through the backend's timer: CUDA events on the current
// stream, the host clock on the CPU) and summed per kernel and device, as
// PyTorch's profiler table does. Off, it costs one relaxed atomic load per
// kernel call. Slots a backend calls from inside another slot are counted in
// the outer one.
//
//   fm::Profile prof;
//   step();
//   std::fputs(fm::Profile::table(prof.stop()).c_str(), stderr);
#include <cstdint>
#include <string>
#include <vector>

#include "fm/device.h"

namespace fm {

class Profile {
 public:
  struct Row {
    std::string kernel, device;
    int64_t calls = 0;
    double ms = 0;  // summed over calls
  };
  Profile();  // starts; one Profile may be open at a time
  ~Profile();
  Profile(const Profile&) = delete;
  Profile& operator=(const Profile&) = delete;

  // Waits for the timed work, closes the profile and returns one row per
  // kernel and device, the most time first.
  std::vector<Row> stop();
  // Rows as an aligned text table with each row's share of the total.
  static std::string table(const std::vector<Row>& rows);

 private:
  bool open_ = true;
};

}  // namespace fm

namespace fm::detail {
// What a backend gives the profiler to time its kernels on the device (the
// host clock is used where a device type has none): start returns a handle
// after marking the start on the current stream, stop marks the end,
// elapsed_ms waits for it, release returns the handle.
struct DeviceTimer {
  void* (*start)() = nullptr;
  void (*stop)(void* handle) = nullptr;
  double (*elapsed_ms)(void* handle) = nullptr;
  void (*release)(void* handle) = nullptr;
};
void set_device_timer(DeviceType type, DeviceTimer timer);
}  // namespace fm::detail

#pragma once
// The backend table. Each kernel is a slot holding one function pointer per
// device type; op code (device independent) calls the slot, and each backend
// fills its entries at load time with FM_REGISTER_KERNEL. A new backend plugs
// in without touching op code.
#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "fm/device.h"
#include "fm/error.h"

namespace fm {

namespace detail {
// Set while an fm::Profile is open (fm/profile.h).
struct KernelProfiler {
  int64_t (*begin)(const char* name, Device d);  // a token for end, or -1 when nested
  void (*end)(int64_t token);
};
extern std::atomic<const KernelProfiler*> kernel_profiler;

class ProfiledCall {
 public:
  ProfiledCall(const KernelProfiler* p, const char* name, Device d) : p_(p), token_(p->begin(name, d)) {}
  ~ProfiledCall() { p_->end(token_); }
  ProfiledCall(const ProfiledCall&) = delete;
  ProfiledCall& operator=(const ProfiledCall&) = delete;

 private:
  const KernelProfiler* p_;
  int64_t token_;
};
}  // namespace detail

namespace detail {
// Every slot that received a kernel notes itself here, so tests can list the
// slots (a backend missing one is found without a list kept by hand).
using SlotHas = bool (*)(const void* slot, DeviceType t);
void note_kernel_slot(const char* name, const void* slot, SlotHas has);
}  // namespace detail

// The slots that hold a kernel for some device, with the devices each has.
struct KernelSlotInfo {
  std::string name;
  bool has[kNumDeviceTypes];
};
std::vector<KernelSlotInfo> kernel_slots();

template <class Sig> class Kernel;

template <class R, class... Args>
class Kernel<R(Args...)> {
 public:
  using Fn = R (*)(Args...);
  // constexpr: slots are constant-initialised, so registration from another
  // file's static initialiser can never run before the slot exists.
  constexpr explicit Kernel(const char* name) : name_(name), fns_{} {}

  void set(DeviceType t, Fn f) {
    fns_[int(t)] = f;
    detail::note_kernel_slot(name_, this, [](const void* k, DeviceType d) { return static_cast<const Kernel*>(k)->has(d); });
  }
  bool has(DeviceType t) const { return fns_[int(t)] != nullptr; }
  Fn get(DeviceType t) const { return fns_[int(t)]; }  // e.g. for a test to wrap a kernel
  const char* name() const { return name_; }

  template <class... A>
  R operator()(Device d, A&&... args) const {
    Fn f = fns_[int(d.type)];
    if (!f) error(name_, ": no kernel for device ", d.str());
    if (const auto* p = detail::kernel_profiler.load(std::memory_order_relaxed)) {
      detail::ProfiledCall timed(p, name_, d);
      return f(std::forward<A>(args)...);
    }
    return f(std::forward<A>(args)...);
  }

 private:
  const char* name_;
  Fn fns_[kNumDeviceTypes];
};


}  // namespace fm

#define FM_CONCAT_INNER(a, b) a##b
#define FM_CONCAT(a, b) FM_CONCAT_INNER(a, b)
#define FM_REGISTER_KERNEL(slot, device_type, fn) \
  static const bool FM_CONCAT(fm_kernel_registered_, __LINE__) = ((slot).set(device_type, fn), true)

#include <map>
#include <mutex>

#include "fm/kernels/kernel.h"

namespace fm {
namespace {

struct Slot {
  const char* name;
  detail::SlotHas has;
};

// Constructed on first use: registrations run from other files' static initialisers.
std::map<const void*, Slot>& slots(std::mutex*& mu) {
  static std::mutex m;
  static std::map<const void*, Slot> s;
  mu = &m;
  return s;
}

}  // namespace

void detail::note_kernel_slot(const char* name, const void* slot, SlotHas has) {
  std::mutex* mu;
  auto& s = slots(mu);
  std::lock_guard<std::mutex> lock(*mu);
  s[slot] = {name, has};
}

std::vector<KernelSlotInfo> kernel_slots() {
  std::mutex* mu;
  auto& s = slots(mu);
  std::lock_guard<std::mutex> lock(*mu);
  std::vector<KernelSlotInfo> out;
  for (const auto& [slot, info] : s) {
    KernelSlotInfo k{info.name, {}};
    for (int t = 0; t < kNumDeviceTypes; ++t) k.has[t] = info.has(slot, DeviceType(t));
    out.push_back(k);
  }
  return out;
}

}  // namespace fm

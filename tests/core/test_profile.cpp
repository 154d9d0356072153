// fm::Profile: every kernel-slot call is counted and timed once, slots called
// from inside another slot are counted in the outer one, and ops reach it.
#include <atomic>
#include <chrono>
#include <thread>

#include "fm/kernels/kernel.h"
#include "fm/profile.h"
#include "helpers.h"

using namespace fm;

namespace {
constinit Kernel<void(int)> inner{"test_inner"};
constinit Kernel<void(int)> outer{"test_outer"};
constinit Kernel<void(int)> slow{"test_slow"};
std::atomic<bool> slow_started{false};
void inner_cpu(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }
void outer_cpu(int ms) { inner(Device::cpu(), ms); }
FM_REGISTER_KERNEL(inner, DeviceType::cpu, inner_cpu);
FM_REGISTER_KERNEL(outer, DeviceType::cpu, outer_cpu);
void slow_cpu(int ms) {
  slow_started = true;
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
FM_REGISTER_KERNEL(slow, DeviceType::cpu, slow_cpu);

const Profile::Row* find(const std::vector<Profile::Row>& rows, const std::string& name) {
  for (const auto& r : rows)
    if (r.kernel == name) return &r;
  return nullptr;
}
}  // namespace

TEST(Profile, CountsAndTimesEachCallOnceAndNestedCallsInTheOuter) {
  Profile prof;
  for (int i = 0; i < 3; ++i) outer(Device::cpu(), 2);
  inner(Device::cpu(), 1);
  const auto rows = prof.stop();
  const auto* o = find(rows, "test_outer");
  const auto* n = find(rows, "test_inner");
  ASSERT_TRUE(o && n);
  EXPECT_EQ(o->calls, 3);
  EXPECT_EQ(n->calls, 1);  // the three nested calls are in test_outer's time
  EXPECT_GE(o->ms, 6.0);
  EXPECT_GE(n->ms, 1.0);
  EXPECT_LT(n->ms, o->ms);
  EXPECT_EQ(o->device, "cpu");
  EXPECT_EQ(rows.front().kernel, "test_outer");  // most time first
  EXPECT_NE(Profile::table(rows).find("test_outer"), std::string::npos);
}

TEST(Profile, SeesOpsAndNothingOnceClosed) {
  Tensor a = randn({64, 64}), b = randn({64, 64});
  std::vector<Profile::Row> rows;
  {
    Profile prof;
    for (int i = 0; i < 5; ++i) a = a + b;
    (void)matmul(a, b);
    rows = prof.stop();
  }
  const auto* add = find(rows, "binary");
  ASSERT_TRUE(add);
  EXPECT_EQ(add->calls, 5);
  EXPECT_TRUE(find(rows, "gemm"));
  inner(Device::cpu(), 0);  // closed: not recorded anywhere, no error
  Profile again;  // a new one may open once the last is closed
  EXPECT_TRUE(again.stop().empty());
}

TEST(Profile, OnlyOneAtATime) {
  Profile prof;
  EXPECT_THROW(Profile(), Error);
}

// A call still timing on another thread when stop() runs is left out of
// that profile, and its end does not land in the next profile's records.
TEST(Profile, StopWhileAnotherThreadIsTimingLosesThatCallCleanly) {
  std::vector<Profile::Row> first, second;
  {
    Profile prof;
    slow_started = false;
    std::thread t([] { slow(Device::cpu(), 150); });
    while (!slow_started) std::this_thread::yield();
    first = prof.stop();
    Profile next;
    inner(Device::cpu(), 0);
    t.join();  // the slow call ends while `next` is open
    second = next.stop();
  }
  EXPECT_FALSE(find(first, "test_slow"));
  EXPECT_FALSE(find(second, "test_slow"));
  const auto* n = find(second, "test_inner");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->calls, 1);
  EXPECT_LT(n->ms, 100.0) << "the slow call's end was written into this profile's record";
}

#pragma once
// Counter-based random numbers (Philox4x32-10). Element i of a draw depends
// only on (seed, offset, i), so results do not depend on the thread count,
// and a GPU kernel computing the same function produces the same numbers.
#include <array>
#include <atomic>
#include <cstdint>

#include "fm/host_device.h"

namespace fm {

// Philox4x32 with 10 rounds: 4 x 32 random bits from a 128-bit counter and a
// 64-bit key.
FM_HOST_DEVICE std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr,
                                                  std::array<uint32_t, 2> key) {
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = uint64_t(0xD2511F53u) * ctr[0];
    uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr[2];
    ctr = {uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], uint32_t(p1), uint32_t(p0 >> 32) ^ ctr[3] ^ key[1],
           uint32_t(p0)};
    key[0] += 0x9E3779B9u;
    key[1] += 0xBB67AE85u;
  }
  return ctr;
}

// Uniform in (0, 1]: never 0, so log() is safe in Box-Muller.
FM_HOST_DEVICE float uint_to_unit_float(uint32_t x) {
  return float((x >> 8) + 1) * (1.0f / 16777216.0f);
}
FM_HOST_DEVICE double uints_to_unit_double(uint32_t hi, uint32_t lo) {
  uint64_t v = (uint64_t(hi) << 21) ^ uint64_t(lo >> 11);  // 53 bits
  return double((v & ((uint64_t(1) << 53) - 1)) + 1) * (1.0 / 9007199254740992.0);
}

// A stream: seed plus an offset counting the 128-bit blocks already used.
// Each draw of n values takes ceil(n / 4) blocks; element i of a draw uses
// block (offset + i / 4), lane i % 4.
struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

// Thread safe: reserve() takes its blocks with one atomic add, so threads
// sharing a generator (the default one, a loader's workers) never draw the
// same blocks; which thread gets which blocks is then up to the scheduler.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed), offset_(0) {}
  Generator(const Generator& o) : seed_(o.seed_.load()), offset_(o.offset_.load()) {}
  Generator& operator=(const Generator& o) {
    set_state(o.state());
    return *this;
  }
  void manual_seed(uint64_t seed) { set_state({seed, 0}); }
  uint64_t seed() const { return seed_.load(); }
  // Reserves `blocks` counter blocks and returns the state to draw them from.
  PhiloxState reserve(uint64_t blocks) { return {seed_.load(), offset_.fetch_add(blocks)}; }
  PhiloxState state() const { return {seed_.load(), offset_.load()}; }  // saved in checkpoints
  void set_state(PhiloxState s) {
    seed_.store(s.seed);
    offset_.store(s.offset);
  }

 private:
  std::atomic<uint64_t> seed_, offset_;
};

Generator& default_generator();
void manual_seed(uint64_t seed);

// The 4 lanes of counter block `block` of stream `s`.
FM_HOST_DEVICE std::array<uint32_t, 4> philox_block(PhiloxState s, uint64_t block) {
  uint64_t c = s.offset + block;
  return philox4x32({uint32_t(c), uint32_t(c >> 32), 0u, 0u}, {uint32_t(s.seed), uint32_t(s.seed >> 32)});
}

}  // namespace fm

#pragma once
// The random stream of one sample of a generated data set (captioned shapes,
// captioned melodies): Philox block (draw, split, index) under the key
// `seed`, one block per draw, so sample i is a pure function of (seed, split,
// i) and samples can be made in any order on any number of threads.
#include <array>
#include <cstdint>

#include "fm/random.h"

namespace fm::data {

class SampleStream {
 public:
  SampleStream(uint64_t seed, uint32_t split, int64_t index)
      : key_{uint32_t(seed), uint32_t(seed >> 32)}, split_(split), index_(uint64_t(index)) {}

  double uniform(double lo, double hi) {  // in (lo, hi]
    const auto l = next();
    return lo + (hi - lo) * uints_to_unit_double(l[0], l[1]);
  }
  int below(int n) {  // in [0, n), by multiply-shift of 64 bits
    const auto l = next();
    return int((static_cast<unsigned __int128>(uint64_t(l[0]) << 32 | l[1]) * uint64_t(n)) >> 64);
  }

 private:
  std::array<uint32_t, 4> next() {
    return philox4x32({draws_++, split_, uint32_t(index_), uint32_t(index_ >> 32)}, key_);
  }

  std::array<uint32_t, 2> key_;
  uint32_t split_;
  uint64_t index_;
  uint32_t draws_ = 0;
};

}  // namespace fm::data

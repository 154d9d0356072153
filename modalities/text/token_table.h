#pragma once
// TokenTable: ordinary tokens, id <-> bytes. An id is also the token's merge
// rank: the lower, the earlier BPE merges a pair into it.
//
// Lookups of byte strings are most of encode()'s time, so the table is an
// open-addressing hash over one byte arena rather than std::unordered_map
// (measured: encode 1.3-1.5x faster).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fm::text {

class TokenTable {
 public:
  static constexpr int32_t kNone = -1;

  TokenTable() = default;
  // bytes_by_id[id]: the token's bytes, empty where `id` has no ordinary token.
  // Errors (prefixed with `source`) on duplicate bytes or a missing single byte.
  TokenTable(const std::vector<std::string>& bytes_by_id, const std::string& source);

  // `h` must be hash(bytes).
  int32_t find(std::string_view bytes, uint64_t h) const {
    for (size_t i = h >> shift_;; i = (i + 1) & mask_) {
      const Slot slot = slots_[i];
      if (slot.id == kNone) return kNone;
      if (slot.tag == static_cast<uint32_t>(h) && this->bytes(slot.id) == bytes) return slot.id;
    }
  }
  int32_t find(std::string_view bytes) const { return find(bytes, hash(bytes)); }
  int32_t byte_id(unsigned char b) const { return byte_ids_[b]; }
  std::string_view bytes(int32_t id) const {
    const uint32_t begin = offsets_[static_cast<size_t>(id)];
    return {arena_.data() + begin, offsets_[static_cast<size_t>(id) + 1] - begin};
  }
  int32_t size() const { return static_cast<int32_t>(offsets_.size()) - 1; }  // ids, gaps included
  bool has(int32_t id) const { return id >= 0 && id < size() && !bytes(id).empty(); }

  static uint64_t hash(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = mix(h ^ load(p + i, 8));
    if (i < n) h = mix(h ^ load(p + i, n - i));
    return h;
  }

 private:
  struct Slot {
    uint32_t tag;  // low half of the hash: most mismatches skip the byte compare
    int32_t id;
  };

  static uint64_t load(const unsigned char* p, size_t n) {  // n <= 8 bytes, little-endian
    if (n >= 4) {  // two overlapping 4-byte loads
      uint32_t lo, hi;
      std::memcpy(&lo, p, 4);
      std::memcpy(&hi, p + n - 4, 4);
      return lo | static_cast<uint64_t>(hi) << 32;
    }
    return p[0] | static_cast<uint64_t>(p[n / 2]) << 8 | static_cast<uint64_t>(p[n - 1]) << 16;
  }
  static uint64_t mix(uint64_t h) {  // splitmix64's finaliser
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    return h ^ (h >> 31);
  }

  std::string arena_;              // all tokens' bytes, by id
  std::vector<uint32_t> offsets_{0};  // token id's bytes: arena_[offsets_[id], offsets_[id + 1])
  std::vector<Slot> slots_{Slot{0, kNone}};
  size_t mask_ = 0;
  int shift_ = 64;  // slot of a hash: its top bits
  int32_t byte_ids_[256] = {};
};

}  // namespace fm::text

#include "token_table.h"

#include <bit>
#include <cstdio>

#include "fm/error.h"

namespace fm::text {

TokenTable::TokenTable(const std::vector<std::string>& bytes_by_id, const std::string& source) {
  offsets_.reserve(bytes_by_id.size() + 1);
  for (const auto& bytes : bytes_by_id) {
    arena_ += bytes;
    if (arena_.size() > UINT32_MAX) error(source, ": the tokens' bytes exceed 4 GB");
    offsets_.push_back(static_cast<uint32_t>(arena_.size()));
  }
  // At most half full, so probe chains stay short.
  const size_t capacity = std::bit_ceil(std::max<size_t>(2 * bytes_by_id.size(), 16));
  slots_.assign(capacity, Slot{0, kNone});
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  for (int32_t id = 0; id < size(); ++id) {
    if (bytes(id).empty()) continue;
    const uint64_t h = hash(bytes(id));
    size_t i = h >> shift_;
    for (; slots_[i].id != kNone; i = (i + 1) & mask_)
      if (bytes(slots_[i].id) == bytes(id)) error(source, ": tokens ", slots_[i].id, " and ", id, " have the same bytes");
    slots_[i] = Slot{static_cast<uint32_t>(h), id};
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = find(std::string(1, static_cast<char>(b)));
    if (byte_ids_[b] == kNone) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", b);
      error(source, ": no token for the single byte ", hex, " (byte-level BPE needs all 256)");
    }
  }
}

}  // namespace fm::text

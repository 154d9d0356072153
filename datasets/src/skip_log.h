#pragma once
// What a reader left out when it opened its files: a count and the first
// few reasons, for ImageTextSource::skipped() and skip_messages().
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

struct SkipLog {
  static constexpr size_t kMaxMessages = 20;
  int64_t count = 0;
  std::vector<std::string> messages;

  void add(std::string message) {
    ++count;
    if (messages.size() < kMaxMessages) messages.push_back(std::move(message));
  }
};

}  // namespace fm::data

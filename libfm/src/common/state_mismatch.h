#pragma once
// The one error for a state dict that does not fit what loads it: every
// mismatch is listed in one message, so a user fixes a checkpoint in one go.
#include <string>
#include <vector>

namespace fm::detail {

// Throws fm::Error "<what>: missing: a b; unexpected: c; shape mismatch: d (...);",
// leaving out the empty lists.
[[noreturn]] void throw_state_mismatch(const std::string& what, const std::vector<std::string>& missing,
                                       const std::vector<std::string>& unexpected,
                                       const std::vector<std::string>& mismatched);

}  // namespace fm::detail

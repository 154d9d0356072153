#pragma once
// Standard base64 (RFC 4648, with '=' padding) for the token bytes of rank
// files: a subset too small for a dependency.
#include <optional>
#include <string>
#include <string_view>

namespace fm::text {

std::string base64_encode(std::string_view bytes);
// nullopt when `text` is not canonical padded base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace fm::text

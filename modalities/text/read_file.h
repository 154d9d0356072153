#pragma once
#include <string>

namespace fm::text {

// The whole file as bytes; errors name `op` and the path.
std::string read_file(const std::string& path, const char* op);

}  // namespace fm::text

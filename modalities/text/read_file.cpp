#include "read_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fm/error.h"

namespace fm::text {

std::string read_file(const std::string& path, const char* op) {
  std::ifstream in(path, std::ios::binary);
  if (!in) error(op, ": cannot open ", path, ": ", std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad()) error(op, ": cannot read ", path, ": ", std::strerror(errno));
  return std::move(bytes).str();
}

}  // namespace fm::text

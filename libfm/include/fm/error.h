#pragma once
// fm::Error: the one exception type of libfm. Messages name the op and the
// shapes, dtypes and devices involved, e.g.
//   matmul: [2,3] @ [4,5]: inner dimensions 3 and 4 differ
#include <sstream>
#include <stdexcept>
#include <string>

namespace fm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable parts: fm::error("add: ", a.shape(), ...)
template <class... Parts>
[[noreturn]] void error(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(os.str());
}

}  // namespace fm

#define FM_CHECK(cond, ...)                 \
  do {                                      \
    if (!(cond)) ::fm::error(__VA_ARGS__);  \
  } while (0)

#include "state_mismatch.h"

#include <sstream>

#include "fm/error.h"

namespace fm::detail {

void throw_state_mismatch(const std::string& what, const std::vector<std::string>& missing,
                          const std::vector<std::string>& unexpected, const std::vector<std::string>& mismatched) {
  std::ostringstream os;
  os << what << ":";
  auto list = [&](const char* kind, const std::vector<std::string>& names) {
    if (names.empty()) return;
    os << " " << kind << ":";
    for (const auto& n : names) os << " " << n;
    os << ";";
  };
  list("missing", missing);
  list("unexpected", unexpected);
  list("shape mismatch", mismatched);
  throw Error(os.str());
}

}  // namespace fm::detail

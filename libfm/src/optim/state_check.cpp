#include "state_check.h"

#include <vector>

#include "../common/state_mismatch.h"

namespace fm::optim::detail {

void check_state_dict(const char* what, const std::map<std::string, Shape>& expected,
                      const std::map<std::string, Tensor>& given) {
  std::vector<std::string> missing, unexpected, mismatched;
  for (const auto& [name, shape] : expected) {
    auto it = given.find(name);
    if (it == given.end() || !it->second.defined())
      missing.push_back(name);
    else if (it->second.shape() != shape)
      mismatched.push_back(name + " (given " + it->second.shape().str() + ", expected " + shape.str() + ")");
  }
  for (const auto& entry : given)
    if (!expected.count(entry.first)) unexpected.push_back(entry.first);
  if (missing.empty() && unexpected.empty() && mismatched.empty()) return;
  fm::detail::throw_state_mismatch(what, missing, unexpected, mismatched);
}

}  // namespace fm::optim::detail

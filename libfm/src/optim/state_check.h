#pragma once
// Validation of a state dict before it is loaded: every mismatch is listed
// in one message, so a user fixes a checkpoint in one go.
#include <map>
#include <string>

#include "fm/tensor.h"

namespace fm::optim::detail {

// Throws fm::Error starting with `what` and listing the missing, unexpected
// and wrongly shaped entries of `given` against `expected` (name -> shape).
void check_state_dict(const char* what, const std::map<std::string, Shape>& expected,
                      const std::map<std::string, Tensor>& given);

}  // namespace fm::optim::detail

#pragma once
// What the communicators share: the polled wait of a collective in flight,
// and the check of their tensor arguments.
#include <functional>

#include "fm/tensor.h"

namespace fm::dist::detail {

// Calls done() until it returns true: spinning for the first 2 ms (a sleep
// costs ~60 us of timer slack, more than a small all-reduce takes), then
// sleeping in growing steps up to 1 ms so a long wait leaves the cores to
// others. False when timeout_s passed first.
bool poll_until(const std::function<bool()>& done, double timeout_s);

// Throws naming dist::<op> unless t is defined and contiguous.
void check_contiguous(const Tensor& t, const char* op);

}  // namespace fm::dist::detail

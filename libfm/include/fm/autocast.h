#pragma once
// Mixed precision. Inside an AutocastGuard(bf16), matrix products (linear,
// matmul, attention) cast their f32 inputs to bf16 and compute there; the
// casts are recorded, so gradients reach the f32 parameters (the master
// weights) as f32 and the optimizer keeps f32 state. Norms, softmax,
// cross-entropy and reductions compute in f32 whatever their input dtype, and
// an f32 residual stream plus a bf16 branch promotes back to f32. This is
// PyTorch's autocast policy for the ops libfm has.
#include <optional>
#include <string>

#include "fm/dtype.h"
#include "fm/tensor.h"

namespace fm {

// The dtype matrix products compute in on this thread (nullopt: no autocast).
std::optional<DType> autocast_dtype();

class AutocastGuard {
 public:
  explicit AutocastGuard(std::optional<DType> compute);  // bf16, f16, or nullopt to switch it off
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> prev_;
};

// `t` in the autocast dtype when autocast is on and t is f32; `t` otherwise.
Tensor autocast(const Tensor& t);

// "f32" -> nullopt (no autocast), "bf16" -> bf16, "f16" -> f16; anything
// else is an error naming `key`.
std::optional<DType> parse_precision(const std::string& value, const std::string& key);

}  // namespace fm

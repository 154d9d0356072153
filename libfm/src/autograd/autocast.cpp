#include "fm/autocast.h"

#include "fm/error.h"

namespace fm {
namespace {
thread_local std::optional<DType> t_autocast;
}

std::optional<DType> autocast_dtype() { return t_autocast; }

AutocastGuard::AutocastGuard(std::optional<DType> compute) : prev_(t_autocast) {
  if (compute && *compute != DType::bf16 && *compute != DType::f16)
    error("autocast: compute dtype must be bfloat16 or float16, got ", name(*compute));
  t_autocast = compute;
}

AutocastGuard::~AutocastGuard() { t_autocast = prev_; }

Tensor autocast(const Tensor& t) {
  if (!t_autocast || !t.defined() || t.dtype() != DType::f32) return t;
  return t.to(*t_autocast);
}

std::optional<DType> parse_precision(const std::string& value, const std::string& key) {
  if (value == "f32" || value == "float32") return std::nullopt;
  if (value == "bf16" || value == "bfloat16") return DType::bf16;
  if (value == "f16" || value == "float16") return DType::f16;
  error(key, ": precision '", value, "' is not one of f32, bf16, f16");
}

}  // namespace fm

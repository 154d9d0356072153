#include "fm/dtype.h"

#include <ostream>

#include "fm/error.h"

namespace fm {

size_t itemsize(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::bf16: case DType::f16: return 2;
    case DType::u8: case DType::b8: return 1;
  }
  return 0;
}

const char* name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::bf16: return "bfloat16";
    case DType::f16: return "float16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b8: return "bool";
  }
  return "?";
}

DType dtype_from_name(const std::string& s) {
  struct Alias { const char* a; const char* b; DType t; };
  static const Alias aliases[] = {
      {"f32", "float32", DType::f32}, {"f64", "float64", DType::f64}, {"bf16", "bfloat16", DType::bf16},
      {"f16", "float16", DType::f16}, {"i32", "int32", DType::i32},   {"i64", "int64", DType::i64},
      {"u8", "uint8", DType::u8},     {"bool", "b8", DType::b8}};
  for (const auto& al : aliases)
    if (s == al.a || s == al.b) return al.t;
  error("unknown dtype '", s, "' (expected f32, f64, bf16, f16, i32, i64, u8 or bool)");
}

bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }
bool is_integral(DType t) { return !is_floating(t); }

DType promote(DType a, DType b) {
  if (a == b) return a;
  const bool fa = is_floating(a), fb = is_floating(b);
  if (fa != fb) return fa ? a : b;
  if (fa) {
    if (a == DType::f64 || b == DType::f64) return DType::f64;
    return DType::f32;  // f32 with a half type, or bf16 with f16
  }
  auto rank = [](DType t) {
    switch (t) {
      case DType::b8: return 0;
      case DType::u8: return 1;
      case DType::i32: return 2;
      default: return 3;
    }
  };
  return rank(a) > rank(b) ? a : b;
}

std::ostream& operator<<(std::ostream& os, DType t) { return os << name(t); }

}  // namespace fm

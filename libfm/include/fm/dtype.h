#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "fm/half.h"

namespace fm {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, b8 };

constexpr int kNumDTypes = 8;

size_t itemsize(DType t);
const char* name(DType t);  // "float32", "bfloat16", ... as PyTorch prints them
DType dtype_from_name(const std::string& s);  // accepts "f32"/"float32", "bf16"/"bfloat16", ...
bool is_floating(DType t);
bool is_integral(DType t);  // integers and bool

// The dtype an op on a and b computes in: floats beat integers, wider beats
// narrower, bf16 with f16 gives f32 (as PyTorch).
DType promote(DType a, DType b);

std::ostream& operator<<(std::ostream& os, DType t);

// Maps C++ types to dtypes and back, for templates in kernels and factories.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::b8; };

}  // namespace fm

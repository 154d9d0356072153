#pragma once
// Shared test helpers: comparisons against naive references and gradcheck.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "fm/fm.h"

namespace fm::test {

// Every element of `actual` within atol + rtol * |expected| of `expected`.
inline ::testing::AssertionResult all_close(const Tensor& actual, const std::vector<double>& expected,
                                            double rtol = 1e-5, double atol = 1e-6) {
  std::vector<double> a = actual.to_vector<double>();
  if (a.size() != expected.size())
    return ::testing::AssertionFailure() << "size " << a.size() << " vs expected " << expected.size();
  for (size_t i = 0; i < a.size(); ++i) {
    const bool both_nan = std::isnan(a[i]) && std::isnan(expected[i]);
    if (!both_nan && !(std::fabs(a[i] - expected[i]) <= atol + rtol * std::fabs(expected[i])))
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs expected " << expected[i];
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double rtol = 1e-5,
                                            double atol = 1e-6) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << actual.shape() << " vs expected " << expected.shape();
  return all_close(actual, expected.to_vector<double>(), rtol, atol);
}

// gradcheck as a gtest assertion.
inline ::testing::AssertionResult grads_ok(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                           const std::vector<Tensor>& inputs, GradcheckOptions opt = {}) {
  std::string report;
  if (gradcheck(f, inputs, &report, opt)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << report;
}

// A fresh random f64 leaf that requires grad.
inline Tensor leaf(const Shape& shape, double scale = 1.0) {
  return (randn(shape, DType::f64) * scale).detach().requires_grad_(true);
}

}  // namespace fm::test

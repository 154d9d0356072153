#pragma once
// Shared test helpers: comparisons against naive references, gradcheck,
// error messages, and files in a per-test temp directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
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

// The worst element's error, relative to that element's own size plus the
// reference's root-mean-square: max_i |a_i - e_i| / (|e_i| + rms(e)), in f64
// on the host (actual may live on any device). Element-wise, so an error in
// a small element is not hidden behind the largest one (as dividing by
// max |e| would); the rms term keeps elements near zero from demanding an
// impossible relative precision. Infinite when shapes differ or NaNs sit in
// different places.
inline double rel_err(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape()) return INFINITY;
  const std::vector<double> x = actual.to(Device::cpu()).to_vector<double>(), y = expected.to_vector<double>();
  double sq = 0;
  size_t n = 0;
  for (size_t i = 0; i < y.size(); ++i)
    if (!std::isnan(y[i])) sq += y[i] * y[i], ++n;
  const double rms = std::max(1e-30, std::sqrt(sq / double(std::max<size_t>(n, 1))));
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;
    if (!std::isnan(y[i])) worst = std::max(worst, std::fabs(x[i] - y[i]) / (std::fabs(y[i]) + rms));
  }
  return worst;
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

// Row-major coordinates of element i of a tensor of `shape`.
inline std::vector<int64_t> coords(int64_t i, const Shape& shape) {
  std::vector<int64_t> c(size_t(shape.size()));
  for (int d = shape.size() - 1; d >= 0; --d) {
    c[size_t(d)] = i % shape[d];
    i /= shape[d];
  }
  return c;
}

// The row-major index of coordinates `c` in a tensor of `shape`.
inline int64_t linear(const std::vector<int64_t>& c, const Shape& shape) {
  int64_t i = 0;
  for (int d = 0; d < shape.size(); ++d) i = i * shape[d] + c[size_t(d)];
  return i;
}

// The message of the fm::Error that f throws ("" when none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Expects f to throw fm::Error whose message contains `part`.
template <class F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no fm::Error (expected one mentioning '" << part << "')";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// The whole content of a file ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Replaces the content of a file with `bytes`.
inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A fixture whose tests each get a fresh directory under the system temp dir,
// <prefix><pid>_<test name>, removed after the test.
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(std::string prefix) : prefix_(std::move(prefix)) {}
  void SetUp() override {
    const std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = std::filesystem::temp_directory_path() / (prefix_ + std::to_string(::getpid()) + "_" + test);
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // The names of the entries in the directory, sorted.
  std::vector<std::string> files_in_dir() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::filesystem::path dir_;

 private:
  std::string prefix_;
};

}  // namespace fm::test

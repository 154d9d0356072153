// rfft and irfft against a naive DFT in f64, round trips, the Hermitian rule
// of irfft and finite-difference gradients, on fresh random signals of even,
// odd and prime lengths.
#include <cmath>
#include <numbers>

#include "fm/kernels/spectral.h"
#include "helpers.h"

namespace fm {
namespace {

using test::all_close;
using test::grads_ok;
using test::leaf;

// libfm built without FFmpeg's libavutil has no CPU FFT (the ops say so).
#define SKIP_WITHOUT_CPU_FFT() \
  if (!kernels::rfft.has(DeviceType::cpu)) GTEST_SKIP() << "no CPU FFT in this build (FFmpeg's libavutil missing)"

// X_k = sum_j x_j e^(-2 pi i jk / n), rows of x [M, n] -> [M, n/2+1, 2].
std::vector<double> naive_rfft(const std::vector<double>& x, int64_t rows, int64_t n) {
  const int64_t bins = n / 2 + 1;
  std::vector<double> out(size_t(rows * bins * 2));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < bins; ++k) {
      double re = 0, im = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double a = 2 * std::numbers::pi * double(j * k % n) / double(n);
        re += x[size_t(r * n + j)] * std::cos(a);
        im -= x[size_t(r * n + j)] * std::sin(a);
      }
      out[size_t((r * bins + k) * 2)] = re;
      out[size_t((r * bins + k) * 2 + 1)] = im;
    }
  return out;
}

TEST(Rfft, EqualsNaiveDftAtManyLengths) {
  SKIP_WITHOUT_CPU_FFT();
  manual_seed(11);
  for (int64_t n : {1, 2, 3, 7, 16, 97, 400, 401, 512}) {
    const Tensor x = randn({3, n}, DType::f64);
    const Tensor X = rfft(x);
    ASSERT_EQ(X.shape(), Shape({3, n / 2 + 1, 2}));
    EXPECT_TRUE(all_close(X, naive_rfft(x.to_vector<double>(), 3, n), 1e-10, 1e-10)) << "n = " << n;
    const Tensor Xf = rfft(x.to(DType::f32));
    EXPECT_EQ(Xf.dtype(), DType::f32);
    EXPECT_LT(test::rel_err(Xf, X), 2e-6) << "f32, n = " << n;
  }
}

TEST(Rfft, LeadingDimsAndRoundTrip) {
  SKIP_WITHOUT_CPU_FFT();
  manual_seed(12);
  for (int64_t n : {5, 64, 400, 401}) {
    const Tensor x = randn({2, 3, n});
    const Tensor X = rfft(x);
    EXPECT_EQ(X.shape(), Shape({2, 3, n / 2 + 1, 2}));
    EXPECT_TRUE(all_close(irfft(X, n), x, 1e-5, 1e-5)) << "n = " << n;
    const Tensor xd = x.to(DType::f64);
    EXPECT_TRUE(all_close(irfft(rfft(xd), n), xd, 1e-12, 1e-12)) << "f64, n = " << n;
  }
}

TEST(Irfft, IgnoresImaginaryPartsOfRealBins) {
  SKIP_WITHOUT_CPU_FFT();
  manual_seed(13);
  for (int64_t n : {8, 9}) {
    const Tensor x = randn({2, n}, DType::f64);
    Tensor X = rfft(x).clone();
    // Imaginary parts a real signal cannot have: DC, and Nyquist for even n.
    std::vector<double> v = X.to_vector<double>();
    const int64_t bins = n / 2 + 1;
    for (int64_t r = 0; r < 2; ++r) {
      v[size_t(r * bins * 2 + 1)] = 5.0;
      if (n % 2 == 0) v[size_t((r * bins + bins - 1) * 2 + 1)] = -3.0;
    }
    EXPECT_TRUE(all_close(irfft(tensor(v, X.shape()), n), x, 1e-12, 1e-12)) << "n = " << n;
  }
}

TEST(Rfft, GradientsMatchFiniteDifferences) {
  SKIP_WITHOUT_CPU_FFT();
  manual_seed(14);
  for (int64_t n : {1, 2, 6, 7, 16}) {
    EXPECT_TRUE(grads_ok([](const std::vector<Tensor>& in) { return rfft(in[0]); }, {leaf({2, n})})) << "n = " << n;
    // irfft's input is a free [bins, 2] tensor; the imaginary parts it
    // ignores must get zero gradient (the finite differences see none).
    EXPECT_TRUE(grads_ok([n](const std::vector<Tensor>& in) { return irfft(in[0], n); }, {leaf({2, n / 2 + 1, 2})}))
        << "n = " << n;
  }
}

TEST(Rfft, HalfTypesComputeInF32) {
  SKIP_WITHOUT_CPU_FFT();
  manual_seed(15);
  const Tensor x = randn({4, 32});
  const Tensor X = rfft(x.to(DType::bf16));
  EXPECT_EQ(X.dtype(), DType::bf16);
  EXPECT_LT(test::rel_err(X.to(DType::f32), rfft(x.to(DType::bf16).to(DType::f32))), 1e-2);
}

TEST(Rfft, BadInputsNameTheProblem) {
  SKIP_WITHOUT_CPU_FFT();
  EXPECT_THROW(rfft(zeros({3, 0})), Error);
  EXPECT_THROW(rfft(zeros({4}, DType::i64)), Error);
  EXPECT_THROW(irfft(zeros({5, 2}), 16), Error);  // 16 needs 9 bins
  EXPECT_THROW(irfft(zeros({9, 3}), 16), Error);  // not (real, imaginary) pairs
}

}  // namespace
}  // namespace fm

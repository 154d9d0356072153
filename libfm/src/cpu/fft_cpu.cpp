// The real DFT on the CPU through FFmpeg's av_tx complex FFT (FFTW is GPL
// and stays out). Rows run in parallel; av_tx contexts keep
// scratch memory, so each thread holds its own, cached by length. Buffers
// are std::vectors, so contexts are made for unaligned data.
extern "C" {
#include <libavutil/tx.h>
}

#include <algorithm>
#include <cmath>
#include <complex>
#include <map>
#include <memory>
#include <numbers>
#include <type_traits>
#include <vector>

#include "dispatch.h"
#include "fm/kernels/spectral.h"

namespace fm::cpu {
namespace {

template <class T> constexpr AVTXType tx_type = AV_TX_FLOAT_FFT;
template <> constexpr AVTXType tx_type<double> = AV_TX_DOUBLE_FFT;

// FFmpeg 5.1's av_tx has fast codelets for 2^a * {1, 3, 5, 15} only; any other
// length falls back to an O(n^2) loop (3 ms for Whisper's n = 400). Those go
// through Bluestein's algorithm instead: the DFT as a convolution with a chirp,
// done by power-of-two FFTs of length m >= 2n - 1.
bool av_tx_fast(int64_t n) {
  while (n % 2 == 0) n /= 2;
  return n == 1 || n == 3 || n == 5 || n == 15;
}

template <class T>
class Transform {
 public:
  Transform(int64_t n, bool inverse) : n_(n) {
    if (av_tx_fast(n)) {
      init(&ctx_, &fn_, n, inverse);
      return;
    }
    m_ = 1;
    while (m_ < 2 * n - 1) m_ *= 2;
    init(&ctx_, &fn_, m_, false);
    init(&inv_ctx_, &inv_fn_, m_, true);
    // w_k = e^(-/+ i pi k^2 / n), k^2 taken mod 2n so the angle stays exact.
    chirp_.resize(size_t(n));
    const double sign = inverse ? 1.0 : -1.0;
    for (int64_t k = 0; k < n; ++k) {
      const double a = sign * std::numbers::pi * double((k * k) % (2 * n)) / double(n);
      chirp_[size_t(k)] = {T(std::cos(a)), T(std::sin(a))};
    }
    std::vector<std::complex<T>> b(static_cast<size_t>(m_));
    for (int64_t k = 0; k < n; ++k) b[size_t(k)] = std::conj(chirp_[size_t(k)]);
    for (int64_t k = 1; k < n; ++k) b[size_t(m_ - k)] = std::conj(chirp_[size_t(k)]);
    filter_.resize(size_t(m_));
    fn_(ctx_, filter_.data(), b.data(), sizeof(std::complex<T>));
    work_.resize(size_t(m_));
    work2_.resize(size_t(m_));
  }
  ~Transform() {
    av_tx_uninit(&ctx_);
    av_tx_uninit(&inv_ctx_);
  }
  Transform(const Transform&) = delete;
  Transform& operator=(const Transform&) = delete;

  // out = the unnormalised DFT of in (n values each; in is left as it was).
  void run(std::complex<T>* out, std::complex<T>* in) {
    if (m_ == 0) {
      fn_(ctx_, out, in, sizeof(std::complex<T>));
      return;
    }
    for (int64_t k = 0; k < n_; ++k) work_[size_t(k)] = in[k] * chirp_[size_t(k)];
    std::fill(work_.begin() + n_, work_.end(), std::complex<T>(0));
    fn_(ctx_, work2_.data(), work_.data(), sizeof(std::complex<T>));
    for (int64_t k = 0; k < m_; ++k) work2_[size_t(k)] *= filter_[size_t(k)];
    inv_fn_(inv_ctx_, work_.data(), work2_.data(), sizeof(std::complex<T>));
    const T inv_m = T(1) / T(m_);
    for (int64_t k = 0; k < n_; ++k) out[k] = work_[size_t(k)] * chirp_[size_t(k)] * inv_m;
  }

 private:
  static void init(AVTXContext** ctx, av_tx_fn* fn, int64_t n, bool inverse) {
    const T scale = 1;  // unnormalised both ways; irfft scales by 1/n itself
    const int rc = av_tx_init(ctx, fn, tx_type<T>, inverse ? 1 : 0, int(n), &scale, AV_TX_UNALIGNED);
    if (rc < 0 || !*ctx) error("rfft: FFmpeg's av_tx_init failed for length ", n, " (error ", rc, ")");
  }
  int64_t n_, m_ = 0;
  AVTXContext *ctx_ = nullptr, *inv_ctx_ = nullptr;
  av_tx_fn fn_ = nullptr, inv_fn_ = nullptr;
  std::vector<std::complex<T>> chirp_, filter_, work_, work2_;
};

class Plans {
 public:
  template <class T>
  Transform<T>& get(int64_t n, bool inverse) {
    auto& plans = table<T>();
    auto& slot = plans[{n, inverse}];
    if (!slot) slot = std::make_unique<Transform<T>>(n, inverse);
    return *slot;
  }

 private:
  template <class T>
  std::map<std::pair<int64_t, bool>, std::unique_ptr<Transform<T>>>& table() {
    if constexpr (std::is_same_v<T, double>) return f64_;
    else return f32_;
  }
  std::map<std::pair<int64_t, bool>, std::unique_ptr<Transform<float>>> f32_;
  std::map<std::pair<int64_t, bool>, std::unique_ptr<Transform<double>>> f64_;
};

Plans& thread_plans() {
  thread_local Plans plans;
  return plans;
}

template <class T>
void rfft_typed(T* X, const T* x, int64_t rows, int64_t n) {
  const int64_t bins = n / 2 + 1;
#pragma omp parallel if (rows * n > kParallelGrain)
  {
    auto& plan = thread_plans().get<T>(n, false);
    std::vector<std::complex<T>> in(static_cast<size_t>(n)), out(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = x + r * n;
      for (int64_t j = 0; j < n; ++j) in[size_t(j)] = {src[j], T(0)};
      plan.run(out.data(), in.data());
      T* dst = X + r * bins * 2;
      for (int64_t k = 0; k < bins; ++k) {
        dst[2 * k] = out[size_t(k)].real();
        dst[2 * k + 1] = out[size_t(k)].imag();
      }
    }
  }
}

template <class T>
void irfft_typed(T* x, const T* X, int64_t rows, int64_t n) {
  const int64_t bins = n / 2 + 1;
  const T inv_n = T(1) / T(n);
#pragma omp parallel if (rows * n > kParallelGrain)
  {
    auto& plan = thread_plans().get<T>(n, true);
    std::vector<std::complex<T>> in(static_cast<size_t>(n)), out(static_cast<size_t>(n));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const T* src = X + r * bins * 2;
      // The Hermitian spectrum: bin n - k is the conjugate of bin k. The DC
      // bin (and the Nyquist bin of an even length) must be real.
      for (int64_t k = 0; k < bins; ++k) in[size_t(k)] = {src[2 * k], src[2 * k + 1]};
      in[0] = {src[0], T(0)};
      if (n % 2 == 0) in[size_t(n / 2)] = {src[n], T(0)};
      for (int64_t k = bins; k < n; ++k) in[size_t(k)] = std::conj(in[size_t(n - k)]);
      plan.run(out.data(), in.data());
      T* dst = x + r * n;
      for (int64_t j = 0; j < n; ++j) dst[j] = out[size_t(j)].real() * inv_n;
    }
  }
}

void rfft_kernel(const Tensor& X, const Tensor& x) {
  const int64_t n = x.size(1);
  if (x.dtype() == DType::f64) rfft_typed(X.data<double>(), x.data<double>(), x.size(0), n);
  else rfft_typed(X.data<float>(), x.data<float>(), x.size(0), n);
}

void irfft_kernel(const Tensor& x, const Tensor& X) {
  const int64_t n = x.size(1);
  if (x.dtype() == DType::f64) irfft_typed(x.data<double>(), X.data<double>(), x.size(0), n);
  else irfft_typed(x.data<float>(), X.data<float>(), x.size(0), n);
}

}  // namespace

FM_REGISTER_KERNEL(kernels::rfft, DeviceType::cpu, rfft_kernel);
FM_REGISTER_KERNEL(kernels::irfft, DeviceType::cpu, irfft_kernel);

}  // namespace fm::cpu

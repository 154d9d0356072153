#pragma once
// Spectral features of waveforms, as torch.stft / torch.istft, torchaudio's
// and librosa's mel filterbanks, Whisper's log-mel and torchaudio's
// Griffin-Lim. Pure tensor code over fm::rfft / fm::irfft (FFmpeg's FFT on
// the CPU, cuFFT on CUDA): differentiable, on any device, built without
// LIBFM_MEDIA. Complex spectra are (real, imaginary) pairs in a trailing dim.
#include <cstdint>
#include <string>

#include "fm/random.h"
#include "fm/tensor.h"

namespace fm::audio {

// The Hann window of torch.hann_window (periodic: the window of an
// `length + 1` point symmetric one, without its last point), f32 on `device`.
Tensor hann_window(int64_t length, bool periodic = true, Device device = Device::cpu());

struct StftOptions {
  int64_t n_fft = 400;
  int64_t hop_length = 0;  // 0: n_fft / 4
  int64_t win_length = 0;  // 0: n_fft; a shorter window is zero-padded at both ends to n_fft
  Tensor window;           // [win_length]; undefined: hann_window(win_length)
  bool center = true;      // pad n_fft / 2 at both ends, so frame t is centred on sample t * hop
  std::string pad_mode = "reflect";  // or "constant" (zeros)
};

// x [..., T] -> [..., n_fft / 2 + 1, frames, 2], frames = 1 + (T' - n_fft) / hop
// with T' the padded length (torch.stft(return_complex=True) then
// view_as_real; onesided, unnormalised).
Tensor stft(const Tensor& x, const StftOptions& options = {});
// The inverse (torch.istft): overlap-added windowed frames divided by the
// summed squared window. `length` trims or zero-pads the result (-1: as
// torch, the padded length minus the centring). Throws when the window's
// overlap leaves a sample with (almost) no weight (the NOLA condition).
Tensor istft(const Tensor& X, const StftOptions& options = {}, int64_t length = -1);

// |X| and |X|^2 of complex pairs [..., 2] -> [...].
Tensor complex_abs(const Tensor& X);
Tensor complex_power(const Tensor& X);

enum class MelScale { htk, slaney };
enum class MelNorm { none, slaney };  // slaney: each filter's area is 2 / its width in Hz

// The mel filterbank [n_mels, n_fft / 2 + 1] of librosa.filters.mel (and,
// transposed, of torchaudio's melscale_fbanks with the same scale and norm):
// triangles between n_mels + 2 points equally spaced on the mel scale from
// f_min to f_max (<= 0: sample_rate / 2), computed in f64, returned f32.
Tensor mel_filterbank(int sample_rate, int64_t n_fft, int64_t n_mels, double f_min = 0.0, double f_max = 0.0,
                      MelScale scale = MelScale::slaney, MelNorm norm = MelNorm::slaney);

struct MelOptions {
  int sample_rate = 16000;
  StftOptions stft;
  int64_t n_mels = 80;
  double f_min = 0.0, f_max = 0.0;  // f_max <= 0: sample_rate / 2
  MelScale scale = MelScale::htk;   // torchaudio.transforms.MelSpectrogram's defaults
  MelNorm norm = MelNorm::none;
  double power = 2.0;  // 1: magnitude, 2: power
};

// x [..., T] -> [..., n_mels, frames] (torchaudio.transforms.MelSpectrogram).
Tensor mel_spectrogram(const Tensor& x, const MelOptions& options = {});

// openai-whisper's log_mel_spectrogram of 16 kHz audio x [..., T] (no
// padding): n_fft 400, hop 160, Hann, Slaney mel (librosa's, which Whisper
// ships), the last frame dropped, log10 clamped at 1e-10 and at 8 below the
// clip's maximum, then (v + 4) / 4. -> [..., n_mels, T / 160].
Tensor whisper_log_mel(const Tensor& x, int64_t n_mels = 80);

struct GriffinLimOptions {
  StftOptions stft;
  int n_iter = 32;
  double momentum = 0.99;  // the fast Griffin-Lim of Perraudin et al. (0: the plain algorithm)
  bool rand_init = true;   // random initial phases; false: zero phase
  int64_t length = -1;     // as istft
};

// A waveform whose STFT magnitude approximates `magnitude` [..., bins, frames]
// (torchaudio.functional.griffinlim with power 1).
Tensor griffin_lim(const Tensor& magnitude, const GriffinLimOptions& options = {}, Generator* gen = nullptr);

}  // namespace fm::audio

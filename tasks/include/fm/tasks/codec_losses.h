#pragma once
// The codec's reconstruction losses and quality measures (fm/tasks/codec_model.h).
//
// Multi-scale log-mel distance: for each window n_fft = 2^i, i from min_log2
// to max_log2 (6..11 at 16 kHz: 64 to 2048 samples), a power mel
// spectrogram (fm::audio::mel_spectrogram: Hann window of n_fft, hop n_fft / 4,
// centred with zero padding, min(n_mels, n_fft / 4) HTK triangles from 0 Hz
// to Nyquist, unnormalised), then log10(mel + floor) (audiocraft's
// MelSpectrogramWrapper with log), and the mean absolute difference of the
// two log-mels over mel bins and frames; the scales are averaged.
//
// The codec's loss is DAC's choice, L1 on log-mels (rather than EnCodec's
// L1 on mels plus a weighted L2 on log-mels: one term, in the units of the
// reported metric), with floor 1e-2 (loss.mel_floor), beside a waveform L1
// that carries most of the weight: without a discriminator, a log-mel loss
// that dominates (EnCodec's weights, or a floor of 1e-5, where the quiet bins
// between harmonics rule the gradient) matches spectra with the wrong phase
// and leaves SI-SNR far below 0 dB for thousands of steps. The reported
// mel_distance is this distance with the defaults below (floor 1e-5),
// whatever the loss's keys. Power mels (not magnitudes) keep the gradient
// finite where a frame is digital silence.
//
// SI-SNR (scale-invariant signal-to-noise ratio, Le Roux et al. 2019), per
// clip, in dB: both signals made zero-mean, e the estimate and r the
// reference; p = r <e, r> / (|r|^2 + eps), and
// 10 log10((|p|^2 + eps) / (|e - p|^2 + eps)), eps = 1e-8.
#include <cstdint>

#include "fm/tensor.h"

namespace fm::tasks {

struct MelDistanceOptions {
  int sample_rate = 16000;
  int64_t min_log2 = 6, max_log2 = 11;  // windows 2^min_log2 .. 2^max_log2
  int64_t n_mels = 64;                  // per scale at most n_fft / 4
  double floor = 1e-5;                  // added before log10
};

// wave [B, 1, T] or [B, T] -> the scale-averaged log-mel L1 per clip, [B]
// (differentiable in both arguments).
Tensor mel_distance(const Tensor& estimate, const Tensor& reference, const MelDistanceOptions& options = {});

// [B, 1, T] or [B, T] -> SI-SNR per clip in dB, [B] (differentiable).
Tensor si_snr(const Tensor& estimate, const Tensor& reference);

}  // namespace fm::tasks

// Written apart from melodies_generator.cpp on purpose: the tables below are
// copied from the spec, not shared, so a mistake in one side shows up as a
// disagreement instead of being repeated by both. The checker has its own
// small FFT, so that it needs neither FFmpeg nor libfm's ops (a clip is read
// in a few hundred transforms of at most 4096 points).
#include "fm/data/melodies_checker.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

#include "fm/error.h"

namespace fm::data {
namespace {

constexpr int kSampleRate = 16000;

struct TempoWord {
  const char* word;
  int bpm;
};
constexpr std::array<TempoWord, 4> kTempos{{{"slow", 80}, {"moderate", 100}, {"fast", 120}, {"very fast", 140}}};
struct Key {
  const char* tonic;
  const char* mode;
  int tonic_pc;  // pitch class, C = 0
};
constexpr std::array<Key, 9> kKeys{{{"C", "major", 0},
                                    {"D", "major", 2},
                                    {"E", "major", 4},
                                    {"F", "major", 5},
                                    {"G", "major", 7},
                                    {"A", "major", 9},
                                    {"A", "minor", 9},
                                    {"D", "minor", 2},
                                    {"E", "minor", 4}}};
constexpr std::array<int, 7> kMajor{0, 2, 4, 5, 7, 9, 11};
constexpr std::array<int, 7> kHarmonicMinor{0, 2, 3, 5, 7, 8, 11};
constexpr std::array<const char*, 4> kTimbres{"sine wave", "square wave", "sawtooth wave", "plucked string"};
constexpr std::array<const char*, 2> kRegisters{"low", "high"};

// Onsets: 32 ms frames every 8 ms.
constexpr int kFrame = 512;
constexpr int kHop = 128;
constexpr double kFluxFloor = 0.2;         // x the loudest bin: magnitudes below add little flux (-14 dB)
constexpr int kFluxLag = 2;                // frames: the flux compares each frame with the one 16 ms before
constexpr double kOnsetGap = 0.080;        // s between onsets, at least
constexpr double kOnsetLevel = 0.25;       // x the clip's typical onset strength
constexpr double kFluxMedianReach = 0.12;  // s either side: the running median of the flux
constexpr double kSilenceDb = -30;         // onsets are sought up to the last frame within this of the loudest
constexpr double kEndDb = -60;             // the clip has ended where its frames fall this far below the loudest
// Notes.
constexpr int kNoteFft = 4096;                                 // 3.9 Hz bins
constexpr double kSteadyFrom = 0.20, kSteadyTo = 0.85;         // the part of a note that is analysed
constexpr double kMinF0 = 70, kMaxF0 = 2500, kBandTop = 7600;  // Hz
constexpr int kYinWindow = 1024;                               // samples compared at each lag
constexpr double kYinThreshold = 0.15;
constexpr double kSubharmonicShare = 0.01;            // x the energy on f's harmonics: settles f's octave
constexpr double kPeakOverFloor = 10;                 // x the median magnitude: a peak, not noise
constexpr int kTimbreHarmonics = 20;                  // harmonics measured per note
constexpr double kDecayFrom = 0.25, kDecayTo = 0.75;  // the part of a note whose energy slope is read
// Decisions. As measured on 1000 generator clips, clean and with white noise
// at 30 dB SNR (medians over a clip's notes): the pluck decays at -60 to
// -89 dB/s, the additive timbres at -3 to -8 dB/s; a sine's overtones are at
// -42 dB or below (the noise), a square's at -8.5 to -6.3 dB; a square's even
// over odd overtones at -37 dB or below, a sawtooth's at +2.4 to +3.6 dB; the
// median note of a low clip is MIDI 50-67, of a high one 74-91; the BPM is
// within 0.1 %.
constexpr double kTempoTolerance = 0.08;
constexpr double kLowRegisterBelow = 70.5;  // MIDI
constexpr double kPluckDecay = -20;         // dB/s: faster decay is the plucked string
constexpr double kSineOvertones = -20;      // dB: fewer overtones is a sine
constexpr double kSquareEvenOdd = -15;      // dB: fewer even overtones is a square
constexpr double kMinNoteShare = 0.5;       // x the period: shorter notes are left out of the key

template <class A>
bool contains_word(const A& words, const std::string& w) {
  return std::any_of(words.begin(), words.end(), [&](const char* c) { return w == c; });
}

// ---- caption grammar ------------------------------------------------------

class CaptionParser {
 public:
  explicit CaptionParser(const std::string& caption) : caption_(caption) {}

  MelodyCaption parse() {
    MelodyCaption c;
    expect("a ");
    const TempoWord* tempo = nullptr;
    for (const TempoWord& t : kTempos)
      if (rest().rfind(std::string(t.word) + " ", 0) == 0) tempo = &t;
    if (!tempo) fail("expected a tempo (slow, moderate, fast, very fast) at '", rest(), "'");
    c.tempo = tempo->word, c.bpm = tempo->bpm;
    at_ += c.tempo.size() + 1;
    expect("melody in ");
    c.tonic = word(' ');
    c.mode = word(' ');
    c.key = c.tonic + " " + c.mode;
    const bool key = std::any_of(kKeys.begin(), kKeys.end(),
                                 [&](const Key& k) { return c.key == std::string(k.tonic) + " " + k.mode; });
    if (!key) fail("'", c.key, "' is not one of the nine keys");
    expect("played on a ");
    c.timbre = word(',');
    if (!contains_word(kTimbres, c.timbre)) fail("'", c.timbre, "' is not a timbre");
    expect(" ");
    c.register_word = word(' ');
    if (!contains_word(kRegisters, c.register_word)) fail("'", c.register_word, "' is not a register (low, high)");
    if (rest() != "register") fail("expected 'register' at the end, found '", rest(), "'");
    return c;
  }

 private:
  std::string rest() const { return caption_.substr(at_); }

  void expect(const std::string& s) {
    if (caption_.compare(at_, s.size(), s) != 0) fail("expected '", s, "' at '", rest(), "'");
    at_ += s.size();
  }

  // The text up to the next `stop` (which is consumed), of one or more words.
  std::string word(char stop) {
    const size_t end = caption_.find(stop, at_);
    if (end == std::string::npos || end == at_) fail("it ends early, at '", rest(), "'");
    std::string w = caption_.substr(at_, end - at_);
    at_ = end + 1;
    return w;
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    error("melody caption '", caption_, "': ", parts...);
  }

  const std::string& caption_;
  size_t at_ = 0;
};

// ---- a small real FFT -----------------------------------------------------

// Magnitudes of the real DFT of n (a power of two) samples, bins 0..n/2, by
// one complex transform of n/2 points (complex arithmetic written out: the
// std::complex product checks for infinities and is several times slower).
class RealFft {
 public:
  explicit RealFft(int n)
      : n_(n), h_(n / 2), re_(size_t(h_)), im_(size_t(h_)), cos_(size_t(h_)), sin_(size_t(h_)), rev_(size_t(h_)) {
    for (int k = 0; k < h_; ++k) {
      cos_[size_t(k)] = std::cos(2 * std::numbers::pi * k / n_);
      sin_[size_t(k)] = -std::sin(2 * std::numbers::pi * k / n_);
    }
    // Each stage's twiddles in a row, so that its inner loop reads them in order.
    for (int len = 2; len <= h_; len <<= 1)
      for (int k = 0; k < len / 2; ++k) {
        stage_cos_.push_back(cos_[size_t(k * (n_ / len))]);
        stage_sin_.push_back(sin_[size_t(k * (n_ / len))]);
      }
    int bits = 0;
    while ((1 << bits) < h_) ++bits;
    for (int i = 0; i < h_; ++i) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      rev_[size_t(i)] = r;
    }
  }

  // x holds n samples; mag receives n/2 + 1 magnitudes.
  void magnitudes(const double* x, double* mag) {
    for (int i = 0; i < h_; ++i) re_[size_t(rev_[size_t(i)])] = x[2 * i], im_[size_t(rev_[size_t(i)])] = x[2 * i + 1];
    double* re = re_.data();
    double* im = im_.data();
    const double* wr = stage_cos_.data();
    const double* wi = stage_sin_.data();
    for (int half = 1; half < h_; wr += half, wi += half, half <<= 1)
      for (int s = 0; s < h_; s += 2 * half)
        for (int k = 0; k < half; ++k) {
          const int a = s + k, b = a + half;
          const double tr = wr[k] * re[b] - wi[k] * im[b], ti = wr[k] * im[b] + wi[k] * re[b];
          re[b] = re[a] - tr, im[b] = im[a] - ti;
          re[a] += tr, im[a] += ti;
        }
    // X[k] = E[k] + w^k O[k], where E and O, the transforms of the even and
    // odd samples, are the conjugate-symmetric and -antisymmetric parts of Z.
    for (int k = 0; k <= h_; ++k) {
      const int p = k % h_, q = (h_ - k) % h_;
      const double er = 0.5 * (re[p] + re[q]), ei = 0.5 * (im[p] - im[q]);
      const double or_ = 0.5 * (im[p] + im[q]), oi = -0.5 * (re[p] - re[q]);
      const double wr = k < h_ ? cos_[size_t(k)] : -1.0, wi = k < h_ ? sin_[size_t(k)] : 0.0;
      const double xr = er + wr * or_ - wi * oi, xi = ei + wr * oi + wi * or_;
      mag[k] = std::sqrt(xr * xr + xi * xi);
    }
  }

 private:
  int n_, h_;
  std::vector<double> re_, im_, cos_, sin_, stage_cos_, stage_sin_;
  std::vector<int> rev_;
};

// A Hann window of n points, symmetric about its middle; the cosine by
// rotation (a clip needs a window per note).
std::vector<double> hann(int n) {
  std::vector<double> w(static_cast<size_t>(n));
  const double step = 2 * std::numbers::pi / n, cs = std::cos(step), sn = std::sin(step);
  double c = std::cos(0.5 * step), s = std::sin(0.5 * step);
  for (int i = 0; i < n; ++i) {
    w[size_t(i)] = 0.5 - 0.5 * c;
    const double next = c * cs - s * sn;
    s = s * cs + c * sn, c = next;
  }
  return w;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const size_t m = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + long(m), v.end());
  if (v.size() % 2) return v[m];
  return 0.5 * (v[m] + *std::max_element(v.begin(), v.begin() + long(m)));
}

double db(double power_ratio) { return 10 * std::log10(std::max(power_ratio, 1e-12)); }

// ---- onsets ----------------------------------------------------------------

struct Frames {
  int count = 0;
  std::vector<double> energy;  // per frame
  std::vector<double> flux;    // per frame, >= 0
};

Frames analyse_frames(const float* x, int64_t n) {
  Frames f;
  f.count = int((n + kHop - 1) / kHop) + 1;
  // All bins count: a high plucked note may keep little of its attack below 4 kHz.
  const int bins = kFrame / 2 + 1;
  std::vector<double> mags(size_t(f.count) * bins), frame(kFrame);
  const std::vector<double> window = hann(kFrame);
  RealFft fft(kFrame);
  f.energy.assign(size_t(f.count), 0.0);
  for (int j = 0; j < f.count; ++j) {
    const int64_t start = int64_t(j) * kHop - kFrame / 2;  // frame j is centred on sample j * kHop
    for (int i = 0; i < kFrame; ++i) {
      const int64_t s = start + i;
      frame[size_t(i)] = s >= 0 && s < n ? window[size_t(i)] * x[s] : 0.0;
    }
    double* m = &mags[size_t(j) * bins];
    fft.magnitudes(frame.data(), m);
    for (int b = 0; b < bins; ++b) f.energy[size_t(j)] += m[b] * m[b];
  }
  const double loudest = *std::max_element(mags.begin(), mags.end());
  const double scale = loudest > 0 ? 1 / (kFluxFloor * loudest) : 0;
  for (double& v : mags) v = std::log1p(float(scale * v));  // float: a third of the time, precision to spare
  f.flux.assign(size_t(f.count), 0.0);
  for (int j = 0; j < f.count; ++j)
    for (int b = 0; b < bins; ++b) {
      const double prev = j >= kFluxLag ? mags[size_t(j - kFluxLag) * bins + b] : 0.0;
      f.flux[size_t(j)] += std::max(0.0, mags[size_t(j) * bins + b] - prev);
    }
  return f;
}

// Onset times in samples (fractional), from the peaks of the flux above its
// running median (the floor that noise or a smeared sound keeps up).
std::vector<double> pick_onsets(const Frames& f, int last_loud) {
  const int gap = int(std::lround(kOnsetGap * kSampleRate / kHop));
  const int reach = int(std::lround(kFluxMedianReach * kSampleRate / kHop));
  std::vector<double> novelty(size_t(f.count)), around;
  for (int j = 0; j < f.count; ++j) {
    around.assign(f.flux.begin() + std::max(0, j - reach), f.flux.begin() + std::min(f.count, j + reach + 1));
    novelty[size_t(j)] = std::max(0.0, f.flux[size_t(j)] - median(around));
  }
  std::vector<int> peaks;
  for (int j = 0; j <= last_loud && j < f.count; ++j) {
    bool top = novelty[size_t(j)] > 0;
    for (int d = -gap / 2; d <= gap / 2 && top; ++d) {
      const int k = j + d;
      if (k < 0 || k >= f.count || d == 0) continue;
      top = d < 0 ? novelty[size_t(j)] > novelty[size_t(k)] : novelty[size_t(j)] >= novelty[size_t(k)];
    }
    if (top) peaks.push_back(j);
  }
  if (peaks.empty()) return {};
  // The typical onset: the median of the peaks within 20 dB of the strongest.
  double strongest = 0;
  for (int j : peaks) strongest = std::max(strongest, novelty[size_t(j)]);
  std::vector<double> heights;
  for (int j : peaks)
    if (novelty[size_t(j)] >= 0.1 * strongest) heights.push_back(novelty[size_t(j)]);
  const double level = kOnsetLevel * median(heights);
  std::vector<double> onsets;
  int previous = -gap;
  for (int j : peaks) {
    if (novelty[size_t(j)] < level || j - previous < gap) continue;
    previous = j;
    // Parabolic interpolation of the peak, then back to samples.
    double offset = 0;
    if (j > 0 && j + 1 < f.count) {
      const double a = novelty[size_t(j - 1)], b = novelty[size_t(j)], c = novelty[size_t(j + 1)];
      if (a - 2 * b + c < 0) offset = std::clamp(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5);
    }
    onsets.push_back(std::max(0.0, (j + offset) * kHop));
  }
  return onsets;
}

// The flux peaks when a note's attack is complete, up to a frame and a half
// late. The note starts where the energy of 2 ms blocks rises most steeply
// (in log terms, above a floor 40 dB below the loudest block) in the 24 ms
// before the peak and the 8 ms after it.
double refine_onset(const float* x, int64_t n, double peak) {
  constexpr int kBlock = 32, kStep = 16;
  const int64_t from = std::max<int64_t>(0, int64_t(peak) - 384), to = std::min<int64_t>(n, int64_t(peak) + 128);
  std::vector<double> e;
  for (int64_t b = from; b + kBlock <= to; b += kStep) {
    double sum = 0;
    for (int64_t i = b; i < b + kBlock; ++i) sum += double(x[i]) * x[i];
    e.push_back(sum);
  }
  if (e.size() < 3) return peak;
  const double floor = 1e-4 * *std::max_element(e.begin(), e.end()) + 1e-30;
  int best = -1;
  double best_rise = 0;
  for (int m = from == 0 ? 0 : 1; m + 1 < int(e.size()); ++m) {
    const double before = m > 0 ? e[size_t(m - 1)] : 0.0;  // nothing precedes the clip
    const double rise = std::log(e[size_t(m + 1)] + floor) - std::log(before + floor);
    if (best < 0 || rise > best_rise) best = m, best_rise = rise;
  }
  return double(from + int64_t(best) * kStep + kStep);  // block m's middle: where blocks m - 1 and m + 1 meet
}

// ---- notes -----------------------------------------------------------------

struct NoteSpectrum {
  std::vector<double> mag;  // kNoteFft / 2 + 1
  double bin_hz = double(kSampleRate) / kNoteFft;
  double floor = 0;  // the median magnitude from kMinF0 to kBandTop: noise and leakage

  double at(double hz) const {  // the largest magnitude within +-1 % (at least one bin) of hz
    const double centre = hz / bin_hz, reach = std::max(1.0, 0.01 * centre);
    const int lo = std::max(0, int(std::floor(centre - reach))),
              hi = std::min(int(mag.size()) - 1, int(std::ceil(centre + reach)));
    double m = 0;
    for (int b = lo; b <= hi; ++b) m = std::max(m, mag[size_t(b)]);
    return m;
  }

  // The frequency of the spectral peak nearest hz (within +-3 %), refined by
  // parabolic interpolation of the log magnitudes; hz itself when none.
  double peak_near(double hz) const {
    const int lo = std::max(1, int(std::floor(0.97 * hz / bin_hz))),
              hi = std::min(int(mag.size()) - 2, int(std::ceil(1.03 * hz / bin_hz)));
    int best = -1;
    for (int b = lo; b <= hi; ++b)
      if (best < 0 || mag[size_t(b)] > mag[size_t(best)]) best = b;
    if (best < 0 || mag[size_t(best)] <= 0) return hz;
    const double a = std::log(mag[size_t(best - 1)] + 1e-30), b = std::log(mag[size_t(best)] + 1e-30),
                 c = std::log(mag[size_t(best + 1)] + 1e-30);
    const double offset = a - 2 * b + c < 0 ? std::clamp(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5) : 0.0;
    return (best + offset) * bin_hz;
  }
};

// The period of x[0, w + max_lag) in samples (fractional), by YIN (de
// Cheveigne & Kawahara 2002): the first lag whose cumulative-mean-normalised
// difference falls below kYinThreshold, at its local minimum. Periodicity
// does not care which harmonics are strong (a plucked string's are random),
// and the first such lag is the period rather than a multiple of it.
double yin_period(const float* x, int w, int min_lag, int max_lag) {
  // The difference function, lags in the inner loop (independent sums, which
  // the compiler vectorises).
  std::vector<float> sums(size_t(max_lag + 2), 0.0f);
  float* s = sums.data();
  for (int i = 0; i < w; ++i) {
    const float xi = x[i];
    const float* ahead = x + i;
    for (int lag = 1; lag <= max_lag + 1; ++lag) {
      const float e = xi - ahead[lag];
      s[lag] += e * e;
    }
  }
  std::vector<double> d(sums.begin(), sums.end());
  // Normalise: d'(lag) = d(lag) / mean(d(1..lag)).
  double running = 0;
  for (int lag = 1; lag <= max_lag + 1; ++lag) {
    running += d[size_t(lag)];
    d[size_t(lag)] = running > 0 ? d[size_t(lag)] * lag / running : 1.0;
  }
  int best = -1;
  for (int lag = min_lag; lag <= max_lag; ++lag)
    if (d[size_t(lag)] < kYinThreshold) {
      while (lag < max_lag && d[size_t(lag + 1)] < d[size_t(lag)]) ++lag;
      best = lag;
      break;
    }
  if (best < 0) {  // nothing clearly periodic: the deepest dip
    best = min_lag;
    for (int lag = min_lag; lag <= max_lag; ++lag)
      if (d[size_t(lag)] < d[size_t(best)]) best = lag;
  }
  const double a = d[size_t(best - 1)], b = d[size_t(best)], c = d[size_t(best + 1)];
  const double offset = a - 2 * b + c > 0 ? std::clamp(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5) : 0.0;
  return best + offset;
}

// YIN's verdict, checked against the note's spectrum, counting only clear
// peaks (kPeakOverFloor above the noise floor) and, for each direction, at
// most two moves:
//  - up: at high notes YIN's whole-sample lags can miss the period by half a
//    sample and find twice (or three times) the period first; then the
//    harmonics of f that are not multiples of 2 (or 3) hold almost none
//    (under kSubharmonicShare) of the energy on its harmonics, and the
//    fundamental is 2 f (or 3 f);
//  - down: YIN takes one harmonic that holds nearly all the energy (a
//    plucked string's fundamental may be weak) for the fundamental; then the
//    spectrum has peaks between its harmonics, at the odd multiples of f / 2
//    (or at the thirds of f) holding more than kSubharmonicShare of the
//    energy on its harmonics, and the fundamental is f / 2 (or f / 3).
// Up first: a move up leaves nothing between the new harmonics to move down for.
double settle_octave(const NoteSpectrum& s, double f) {
  auto peak_power = [&](double hz) {
    const double m = s.at(hz);
    return m > kPeakOverFloor * s.floor ? m * m : 0.0;
  };
  for (int moves = 0; moves < 2; ++moves) {
    double on = 0, off_twos = 0, off_threes = 0;
    for (int k = 1; k <= kTimbreHarmonics && k * f <= kBandTop; ++k) {
      const double p = peak_power(k * f);
      on += p;
      if (k % 2) off_twos += p;
      if (k % 3) off_threes += p;
    }
    if (on > 0 && off_twos < kSubharmonicShare * on && 2 * f <= kMaxF0)
      f *= 2;
    else if (on > 0 && off_threes < kSubharmonicShare * on && 3 * f <= kMaxF0)
      f *= 3;
    else
      break;
  }
  for (int moves = 0; moves < 2; ++moves) {
    double on = 0, halves = 0, thirds = 0;
    for (int k = 1; k <= kTimbreHarmonics && k * f <= kBandTop; ++k) {
      on += s.at(k * f) * s.at(k * f);
      if (f / 2 >= kMinF0) halves += peak_power((k - 0.5) * f);
      if (f / 3 >= kMinF0) thirds += peak_power((k - 2.0 / 3) * f) + peak_power((k - 1.0 / 3) * f);
    }
    if (halves > kSubharmonicShare * on && halves >= thirds)
      f /= 2;
    else if (thirds > kSubharmonicShare * on)
      f /= 3;
    else
      break;
  }
  return f;
}

MelodyNote read_note(const float* x, int64_t onset, int64_t end, const Frames& frames, RealFft& fft) {
  MelodyNote note;
  note.onset = onset, note.end = end;
  const int64_t length = end - onset;
  int64_t from = onset + int64_t(kSteadyFrom * double(length)), to = onset + int64_t(kSteadyTo * double(length));
  if (to - from > kNoteFft) from = (from + to - kNoteFft) / 2, to = from + kNoteFft;
  const int w = int(to - from);
  const int min_lag = int(std::floor(kSampleRate / kMaxF0)), max_lag = int(std::ceil(kSampleRate / kMinF0));
  if (w < max_lag + 256) return note;  // too short to read (midi stays 0)
  const std::vector<double> window = hann(w);
  std::vector<double> buffer(kNoteFft, 0.0);
  for (int i = 0; i < w; ++i) buffer[size_t(i)] = window[size_t(i)] * x[from + i];
  NoteSpectrum s;
  s.mag.resize(kNoteFft / 2 + 1);
  fft.magnitudes(buffer.data(), s.mag.data());
  s.floor =
      median(std::vector<double>(s.mag.begin() + long(kMinF0 / s.bin_hz), s.mag.begin() + long(kBandTop / s.bin_hz)));
  // YIN on the analysed part, refined on the spectral peak of the strongest
  // of the first four harmonics (long window: a fraction of a cent).
  double coarse = kSampleRate / yin_period(x + from, std::min(kYinWindow, w - max_lag - 1), min_lag, max_lag);
  coarse = settle_octave(s, coarse);
  int strongest = 1;
  for (int k = 2; k <= 4 && k * coarse <= kBandTop; ++k)
    if (s.at(k * coarse) > s.at(strongest * coarse)) strongest = k;
  const double f0 = s.peak_near(strongest * coarse) / strongest;
  note.midi = 69 + 12 * std::log2(f0 / 440);

  // Harmonic amplitudes and the share of energy near the harmonics.
  std::array<double, kTimbreHarmonics + 1> a{};
  double near = 0, total = 0;
  std::vector<bool> counted(s.mag.size(), false);
  for (int k = 1; k <= kTimbreHarmonics && k * f0 <= kBandTop; ++k) {
    a[size_t(k)] = s.at(k * f0);
    const int centre = int(std::lround(k * f0 / s.bin_hz));
    for (int b = std::max(0, centre - 3); b <= std::min(int(s.mag.size()) - 1, centre + 3); ++b)
      if (!counted[size_t(b)]) near += s.mag[size_t(b)] * s.mag[size_t(b)], counted[size_t(b)] = true;
  }
  for (size_t b = size_t(kMinF0 / s.bin_hz); b < s.mag.size() && b * s.bin_hz <= kBandTop; ++b)
    total += s.mag[b] * s.mag[b];
  note.confidence = total > 0 ? std::min(1.0, near / total) : 0;
  double over = 0, even = 0, odd = 0;
  for (int k = 2; k <= kTimbreHarmonics; ++k) {
    const double p = a[size_t(k)] * a[size_t(k)];
    over += p;
    (k % 2 == 0 ? even : odd) += p;
  }
  note.overtone_db = db(over / std::max(a[1] * a[1], 1e-30));
  note.even_odd_db = db(even / std::max(odd, 1e-30 + 1e-9 * a[1] * a[1]));

  // The slope of the frame energies through the middle of the note.
  const double t0 = double(onset) + kDecayFrom * double(length), t1 = double(onset) + kDecayTo * double(length);
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int m = 0;
  for (int j = int(std::ceil(t0 / kHop)); j * kHop <= t1 && j < frames.count; ++j) {
    const double t = double(j) * kHop / kSampleRate, y = db(frames.energy[size_t(j)]);
    sx += t, sy += y, sxx += t * t, sxy += t * y, ++m;
  }
  if (m >= 3) note.decay_db_per_s = (m * sxy - sx * sy) / (m * sxx - sx * sx);
  return note;
}

// ---- attributes ------------------------------------------------------------

int pitch_class(double midi) { return int(((std::lround(midi) % 12) + 12) % 12); }

// Do the notes (those of at least kMinNoteShare periods) fit the key: all in
// its scale, the first and last on its tonic?
bool fits_key(const MelodyReading& r, const Key& key) {
  std::vector<double> lengths;
  for (const MelodyNote& n : r.notes) lengths.push_back(double(n.end - n.onset));
  const double period = r.bpm > 0 ? 30.0 / r.bpm * kSampleRate : median(lengths);
  const auto& scale = std::string(key.mode) == "major" ? kMajor : kHarmonicMinor;
  std::vector<int> pcs;
  for (const MelodyNote& n : r.notes)
    if (double(n.end - n.onset) >= kMinNoteShare * period) pcs.push_back(pitch_class(n.midi));
  if (pcs.empty() || pcs.front() != key.tonic_pc || pcs.back() != key.tonic_pc) return false;
  for (int pc : pcs)
    if (std::find(scale.begin(), scale.end(), (pc - key.tonic_pc + 12) % 12) == scale.end()) return false;
  return true;
}

// Where the last note ends: a typical note length after its start (a
// plucked note may fade by 60 dB before then, so its level says little),
// or earlier where the clip falls silent (kEndDb below its loudest frame).
int64_t last_note_end(const Frames& f, const std::vector<double>& onsets, int64_t n) {
  if (onsets.empty()) return n;
  int64_t end = n;
  if (onsets.size() >= 2) {
    std::vector<double> gaps;
    for (size_t i = 1; i < onsets.size(); ++i) gaps.push_back(onsets[i] - onsets[i - 1]);
    end = std::min(n, int64_t(onsets.back() + median(gaps)));
  }
  const double loudest = *std::max_element(f.energy.begin(), f.energy.end());
  int last = int(std::lround(onsets.back() / kHop));
  while (last + 1 < f.count && int64_t(last + 1) * kHop < end && db(f.energy[size_t(last + 1)] / loudest) > kEndDb)
    ++last;
  return std::min(end, int64_t(last + 1) * kHop);
}

double tempo_bpm(const std::vector<double>& onsets) {
  if (onsets.size() < 2) return 0;
  std::vector<double> gaps;
  for (size_t i = 1; i < onsets.size(); ++i) gaps.push_back(onsets[i] - onsets[i - 1]);
  const double d = median(gaps);
  double sum = 0, periods = 0;
  for (double g : gaps) {
    const double k = std::round(g / d);
    if (k < 1 || k > 3 || std::fabs(g / k - d) > 0.15 * d) continue;
    sum += g, periods += k;
  }
  return periods > 0 ? 30.0 * kSampleRate * periods / sum : 0;
}

std::string classify_timbre(double decay, double overtones, double even_odd) {
  if (decay < kPluckDecay) return "plucked string";
  if (overtones < kSineOvertones) return "sine wave";
  return even_odd < kSquareEvenOdd ? "square wave" : "sawtooth wave";
}

}  // namespace

MelodyCaption parse_melody_caption(const std::string& caption) { return CaptionParser(caption).parse(); }

MelodyReading read_melody(const float* x, int64_t n, int sample_rate) {
  FM_CHECK(sample_rate == kSampleRate, "read_melody: the clip is at ", sample_rate,
           " Hz; the checker reads 16000 Hz clips (resample first)");
  FM_CHECK(n >= 0, "read_melody: negative length ", n);
  MelodyReading r;
  if (n < kFrame) return r;
  const Frames frames = analyse_frames(x, n);
  const double loudest = *std::max_element(frames.energy.begin(), frames.energy.end());
  if (loudest <= 0) return r;
  int last_loud = 0;
  for (int j = 0; j < frames.count; ++j)
    if (db(frames.energy[size_t(j)] / loudest) > kSilenceDb) last_loud = j;
  std::vector<double> onsets = pick_onsets(frames, last_loud);
  for (double& onset : onsets) onset = refine_onset(x, n, onset);
  const int64_t sound_end = last_note_end(frames, onsets, n);
  RealFft fft(kNoteFft);
  for (size_t i = 0; i < onsets.size(); ++i) {
    const int64_t on = int64_t(std::lround(onsets[i]));
    const int64_t end = i + 1 < onsets.size() ? int64_t(std::lround(onsets[i + 1])) : sound_end;
    if (end <= on) continue;
    MelodyNote note = read_note(x, on, end, frames, fft);
    if (note.midi > 0) r.notes.push_back(note);
  }
  r.bpm = tempo_bpm(onsets);
  for (const TempoWord& t : kTempos)
    if (std::fabs(r.bpm - t.bpm) <= kTempoTolerance * t.bpm) r.tempo = t.word;
  if (r.notes.empty()) return r;
  std::vector<double> midi, over, even_odd, decay;
  for (const MelodyNote& note : r.notes) {
    midi.push_back(note.midi), over.push_back(note.overtone_db), even_odd.push_back(note.even_odd_db);
    decay.push_back(note.decay_db_per_s);
  }
  r.median_midi = median(midi);
  r.overtone_db = median(over), r.even_odd_db = median(even_odd), r.decay_db_per_s = median(decay);
  r.register_word = r.median_midi < kLowRegisterBelow ? "low" : "high";
  r.timbre = classify_timbre(r.decay_db_per_s, r.overtone_db, r.even_odd_db);
  for (const Key& k : kKeys)
    if (fits_key(r, k)) {
      r.key = std::string(k.tonic) + " " + k.mode;
      break;
    }
  return r;
}

MelodyCheck check_melody(const MelodyReading& reading, const MelodyCaption& caption) {
  MelodyCheck c;
  for (const Key& k : kKeys)
    if (caption.key == std::string(k.tonic) + " " + k.mode) c.key = fits_key(reading, k);
  c.tempo = reading.bpm > 0 && std::fabs(reading.bpm - caption.bpm) <= kTempoTolerance * caption.bpm;
  c.timbre = !reading.timbre.empty() && reading.timbre == caption.timbre;
  c.register_ok = !reading.register_word.empty() && reading.register_word == caption.register_word;
  return c;
}

}  // namespace fm::data

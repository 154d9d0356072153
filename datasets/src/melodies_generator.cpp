#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>

#include "fm/data/melodies.h"
#include "fm/error.h"
#include "fm/random.h"
#include "sample_stream.h"

namespace fm::data {
namespace {

struct Key {
  const char* word;
  int tonic;  // MIDI number in the low register; the high register adds 24
  bool minor;
};
constexpr std::array<Key, 9> kKeys{{{"C major", 48, false},
                                    {"D major", 50, false},
                                    {"E major", 52, false},
                                    {"F major", 53, false},
                                    {"G major", 55, false},
                                    {"A major", 57, false},
                                    {"A minor", 57, true},
                                    {"D minor", 50, true},
                                    {"E minor", 52, true}}};
struct Tempo {
  const char* word;
  int bpm;
};
constexpr std::array<Tempo, 4> kTempos{{{"slow", 80}, {"moderate", 100}, {"fast", 120}, {"very fast", 140}}};
enum Timbre { kSine, kSquare, kSawtooth, kPluck };
constexpr std::array<const char*, 4> kTimbres{"sine wave", "square wave", "sawtooth wave", "plucked string"};
constexpr std::array<const char*, 2> kRegisters{"low", "high"};
constexpr int kHighRegisterShift = 24;

constexpr std::array<int, 7> kMajor{0, 2, 4, 5, 7, 9, 11};
constexpr std::array<int, 7> kHarmonicMinor{0, 2, 3, 5, 7, 8, 11};
constexpr std::array<int, 4> kSteps{-2, -1, 1, 2};

constexpr double kRate = kMelodySampleRate;
constexpr double kMaxPartialHz = 7600;  // band limit of the additive timbres
constexpr double kT60 = 1.0;            // the pluck's fundamental falls 60 dB in this many seconds
constexpr double kRelease = 0.020, kAttack = 0.010, kDecay = 0.080, kSustain = 0.8;
constexpr double kPeak = 0.5;  // of the whole clip

// Split 2 of SampleStream is the noise of render_melody_note(..., noise_seed),
// apart from every clip's stream.

template <size_t K>
int index_of(const std::array<const char*, K>& words, const std::string& w, const char* what) {
  for (size_t i = 0; i < K; ++i)
    if (w == words[i]) return int(i);
  error("melodies: unknown ", what, " '", w, "'");
}

const Key& key_of(const std::string& word) {
  for (const Key& k : kKeys)
    if (word == k.word) return k;
  error("melodies: unknown key '", word, "'");
}

// Section 5, step 2 and 3: a walk over degrees 0..7 from the tonic to the
// tonic (or its octave) that never stays on a degree.
std::vector<int> degree_walk(SampleStream& rng, int n) {
  std::vector<int> d(size_t(n), 0);
  for (int i = 1; i <= n - 2; ++i) {
    for (;;) {
      const int s = kSteps[size_t(rng.below(4))];
      int next = d[size_t(i - 1)] + s;
      if (next < 0 || next > 7) next = d[size_t(i - 1)] - s;
      if (i == n - 2 && (next == 0 || next == 7)) continue;  // the last free note avoids the tonic
      d[size_t(i)] = next;
      break;
    }
  }
  d[size_t(n - 1)] = d[size_t(n - 2)] <= 3 ? 0 : 7;
  return d;
}

// The score of a sample from its stream: attributes, then the degree walk.
MelodySample draw_score(SampleStream& rng) {
  const Key& key = kKeys[size_t(rng.below(int(kKeys.size())))];
  const Tempo& tempo = kTempos[size_t(rng.below(int(kTempos.size())))];
  const int timbre = rng.below(int(kTimbres.size()));
  const int reg = rng.below(int(kRegisters.size()));

  MelodySample s;
  s.key = key.word;
  s.tempo = tempo.word;
  s.bpm = tempo.bpm;
  s.timbre = kTimbres[size_t(timbre)];
  s.register_ = kRegisters[size_t(reg)];
  s.caption = melody_caption(s.key, s.tempo, s.timbre, s.register_);
  s.onsets = melody_onsets(s.bpm);
  const int n = int(s.onsets.size()) - 1;
  const auto& scale = key.minor ? kHarmonicMinor : kMajor;
  const int tonic = key.tonic + (reg == 1 ? kHighRegisterShift : 0);
  for (int d : degree_walk(rng, n)) s.midi.push_back(tonic + scale[size_t(d % 7)] + 12 * (d / 7));
  return s;
}

// Sine, square or sawtooth: the partials k * f0 <= 7600 Hz, each sin(k theta)
// by the Chebyshev recurrence from sin(theta) and cos(theta) (two libm calls
// a sample rather than one a partial), times the envelope.
std::vector<double> render_additive(int timbre, double f0, int64_t length) {
  std::vector<double> amp{0.0};  // amp[k], k = 0..K
  for (int k = 1; k * f0 <= kMaxPartialHz; ++k) {
    if (timbre == kSine) amp.push_back(k == 1 ? 1.0 : 0.0);
    if (timbre == kSquare) amp.push_back(k % 2 == 1 ? 4 / (std::numbers::pi * k) : 0.0);
    if (timbre == kSawtooth) amp.push_back((k % 2 == 1 ? 2 : -2) / (std::numbers::pi * k));
  }
  while (amp.size() > 1 && amp.back() == 0.0) amp.pop_back();
  const size_t K = amp.size() - 1;
  std::vector<double> out(static_cast<size_t>(length));
  for (int64_t j = 0; j < length; ++j) {
    const double t = double(j) / kRate, theta = 2 * std::numbers::pi * f0 * t;
    const double s1 = std::sin(theta), two_cos = 2 * std::cos(theta);
    double prev = 0, cur = s1, sum = amp[1] * s1;
    for (size_t k = 2; k <= K; ++k) {
      const double next = two_cos * cur - prev;
      prev = cur, cur = next;
      sum += amp[k] * cur;
    }
    out[size_t(j)] = sum * melody_envelope(t, length);
  }
  return out;
}

double release_ramp(double t, int64_t length) { return std::min(1.0, (double(length) / kRate - t) / kRelease); }

// The fractional-delay Karplus-Strong note of section 6, normalised to peak
// 1, times the release ramp.
std::vector<double> render_pluck(double f0, int64_t length, const std::function<double()>& noise) {
  const PluckParams p = pluck_params(f0);
  const size_t burst = size_t(std::lround(kRate / f0));
  std::vector<double> e(burst);
  double mean = 0;
  for (double& v : e) mean += v = noise();
  mean /= double(burst);
  std::vector<double> y(static_cast<size_t>(length));
  double u_prev = 0, a_prev = 0;
  for (size_t j = 0; j < y.size(); ++j) {
    const double u = j >= size_t(p.N) ? y[j - size_t(p.N)] : 0.0;
    const double a = p.c * u + u_prev - p.c * a_prev;
    y[j] = (j < burst ? e[j] - mean : 0.0) + p.rho * ((1 - p.S) * a + p.S * a_prev);
    u_prev = u, a_prev = a;
  }
  double peak = 0;
  for (double v : y) peak = std::max(peak, std::fabs(v));
  if (peak == 0) return y;  // only a constant `noise`, whose mean removes it all
  for (size_t j = 0; j < y.size(); ++j) y[j] = y[j] / peak * release_ramp(double(j) / kRate, length);
  return y;
}

uint32_t split_id(const std::string& split) {
  if (split == "train") return 0;
  if (split == "val") return 1;
  error("melodies: split '", split, "' is neither 'train' nor 'val'");
}

}  // namespace

const std::vector<std::string>& melody_keys() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> w;
    for (const Key& k : kKeys) w.emplace_back(k.word);
    return w;
  }();
  return v;
}

const std::vector<std::string>& melody_tempos() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> w;
    for (const Tempo& t : kTempos) w.emplace_back(t.word);
    return w;
  }();
  return v;
}

const std::vector<std::string>& melody_timbres() {
  static const std::vector<std::string> v(kTimbres.begin(), kTimbres.end());
  return v;
}

const std::vector<std::string>& melody_registers() {
  static const std::vector<std::string> v(kRegisters.begin(), kRegisters.end());
  return v;
}

std::string melody_caption(const std::string& key, const std::string& tempo, const std::string& timbre,
                           const std::string& register_word) {
  key_of(key);
  melody_bpm(tempo);
  index_of(kTimbres, timbre, "timbre");
  index_of(kRegisters, register_word, "register");
  return "a " + tempo + " melody in " + key + " played on a " + timbre + ", " + register_word + " register";
}

std::vector<std::string> melody_captions() {
  std::vector<std::string> out;
  for (const std::string& k : melody_keys())
    for (const std::string& t : melody_tempos())
      for (const std::string& i : melody_timbres())
        for (const std::string& r : melody_registers()) out.push_back(melody_caption(k, t, i, r));
  return out;
}

int melody_bpm(const std::string& tempo) {
  for (const Tempo& t : kTempos)
    if (tempo == t.word) return t.bpm;
  error("melodies: unknown tempo '", tempo, "'");
}

std::vector<int64_t> melody_onsets(int bpm) {
  FM_CHECK(bpm >= 30 && bpm <= 480, "melody_onsets: bpm ", bpm, " is not in [30, 480]");
  const int64_t n = 4 * int64_t(bpm) / 30;  // floor(4.0 * BPM / 30)
  std::vector<int64_t> on;
  for (int64_t i = 0; i <= n; ++i) on.push_back((2 * i * 480000 + bpm) / (2 * bpm));  // round(i * 480000 / bpm)
  return on;
}

double midi_to_hz(int midi) { return 440.0 * std::pow(2.0, (midi - 69) / 12.0); }

double melody_envelope(double t, int64_t length) {
  return std::min(1.0, t / kAttack) * release_ramp(t, length) *
         (kSustain + (1 - kSustain) * std::exp(-std::max(0.0, t - kAttack) / kDecay));
}

PluckParams pluck_params(double f0) {
  FM_CHECK(f0 > 0 && f0 < kRate / 4, "pluck_params: f0 ", f0, " Hz is not in (0, ", kRate / 4, ")");
  const double P = kRate / f0, w0 = 2 * std::numbers::pi * f0 / kRate, g = std::pow(10.0, -3 / (kT60 * f0));
  double S = 0.5, rho = 0;
  if (std::cos(w0 / 2) >= g) {
    rho = g / std::cos(w0 / 2);
  } else {
    rho = 0.9999;
    const double h = g / rho, q = (1 - h * h) / (2 * (1 - std::cos(w0)));
    S = (1 - std::sqrt(1 - 4 * q)) / 2;
  }
  const double theta = std::atan2(S * std::sin(w0), 1 - S + S * std::cos(w0)) / w0;
  const double R = P - theta;
  const int N = int(std::floor(R - 0.1));
  const double delta = R - N;
  const double c = std::sin(w0 * (1 - delta) / 2) / std::sin(w0 * (1 + delta) / 2);
  return {N, c, S, rho};
}

std::vector<double> render_melody_note(const std::string& timbre, int midi, int64_t length,
                                       const std::function<double()>& noise) {
  FM_CHECK(length >= 1, "render_melody_note: length ", length, " is below 1");
  const int t = index_of(kTimbres, timbre, "timbre");
  const double f0 = midi_to_hz(midi);
  return t == kPluck ? render_pluck(f0, length, noise) : render_additive(t, f0, length);
}

std::vector<double> render_melody_note(const std::string& timbre, int midi, int64_t length, uint64_t noise_seed) {
  SampleStream rng(noise_seed, 2, 0);
  return render_melody_note(timbre, midi, length, [&] { return rng.uniform(-1, 1); });
}

MelodySample generate_melody_score(const MelodyOptions& o, int64_t index) {
  FM_CHECK(index >= 0, "generate_melody_score: index ", index, " is negative");
  SampleStream rng(o.seed, split_id(o.split), index);
  return draw_score(rng);
}

MelodySample generate_melody_sample(const MelodyOptions& o, int64_t index) {
  FM_CHECK(index >= 0, "generate_melody_sample: index ", index, " is negative");
  SampleStream rng(o.seed, split_id(o.split), index);
  MelodySample s = draw_score(rng);
  const auto noise = [&] { return rng.uniform(-1, 1); };
  std::vector<double> x(kMelodySamples, 0.0);  // zero after the last note: digital silence
  for (size_t i = 0; i < s.midi.size(); ++i) {
    const std::vector<double> note = render_melody_note(s.timbre, s.midi[i], s.onsets[i + 1] - s.onsets[i], noise);
    std::copy(note.begin(), note.end(), x.begin() + s.onsets[i]);
  }
  double peak = 0;
  for (double v : x) peak = std::max(peak, std::fabs(v));
  s.samples.resize(x.size());
  for (size_t j = 0; j < x.size(); ++j) s.samples[j] = float(x[j] / peak * kPeak);  // the peak sample is +-0.5 exactly
  return s;
}

}  // namespace fm::data

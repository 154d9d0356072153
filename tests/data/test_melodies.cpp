// Captioned melodies (../shared/specs/captioned-melodies.md): the invariants
// of section 7 on fresh seeds, the timing and pitch rules, the pluck's test
// vectors, tuning and decay, each note's synthesis against a reference
// written here from the spec, determinism, attribute balance, and the files
// that `fm prepare melodies` writes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <random>
#include <regex>
#include <set>
#include <sstream>

#include "fm/data/melodies.h"
#include "fm/error.h"
#include "fm_cli.h"

using namespace fm::data;
using fm::test::fm_binary;
using fm::test::FmRun;
using fm::test::run_fm;
using fm::test::slurp;
namespace fs = std::filesystem;

namespace {

constexpr double kPi = std::numbers::pi;
constexpr double kFs = 16000;

// The spec's tables (sections 2 and 5), written out again.
struct KeySpec {
  int tonic_low;
  bool minor;
};
const std::map<std::string, KeySpec> kKeySpecs{
    {"C major", {48, false}}, {"D major", {50, false}}, {"E major", {52, false}},
    {"F major", {53, false}}, {"G major", {55, false}}, {"A major", {57, false}},
    {"A minor", {57, true}},  {"D minor", {50, true}},  {"E minor", {52, true}}};
const std::array<int, 7> kMajor{0, 2, 4, 5, 7, 9, 11};
const std::array<int, 7> kMinor{0, 2, 3, 5, 7, 8, 11};  // harmonic minor
const std::map<std::string, int> kBpm{{"slow", 80}, {"moderate", 100}, {"fast", 120}, {"very fast", 140}};

uint64_t fresh_seed() {
  std::random_device rd;
  return uint64_t(rd()) << 32 | rd();
}

MelodySample clip(uint64_t seed, int64_t index, const std::string& split = "train") {
  MelodyOptions o;
  o.seed = seed;
  o.split = split;
  return generate_melody_sample(o, index);
}

int tonic_of(const MelodySample& s) { return kKeySpecs.at(s.key).tonic_low + (s.register_ == "high" ? 24 : 0); }

// The degree 0..7 of a note, from the spec's formula read backwards; -1 when
// the note is not on a degree of the key.
int degree_of(const MelodySample& s, int midi) {
  const auto& scale = kKeySpecs.at(s.key).minor ? kMinor : kMajor;
  for (int d = 0; d <= 7; ++d)
    if (tonic_of(s) + scale[size_t(d % 7)] + 12 * (d / 7) == midi) return d;
  return -1;
}

double spec_envelope(double t, double L) {
  return std::min(1.0, t / 0.010) * std::min(1.0, (L / kFs - t) / 0.020) *
         (0.8 + 0.2 * std::exp(-std::max(0.0, t - 0.010) / 0.080));
}

// The un-enveloped additive waveform, one sin() per partial.
double spec_additive(const std::string& timbre, double f0, double t) {
  double sum = 0;
  for (int k = 1; k * f0 <= 7600; ++k) {
    const double s = std::sin(2 * kPi * k * f0 * t);
    if (timbre == "sine wave" && k == 1) sum += s;
    if (timbre == "square wave" && k % 2 == 1) sum += 4 / kPi * s / k;
    if (timbre == "sawtooth wave") sum += 2 / kPi * (k % 2 == 1 ? 1 : -1) * s / k;
  }
  return sum;
}

// The pluck written as the spec writes it, from given noise values.
std::vector<double> spec_pluck(double f0, int64_t L, const std::vector<double>& noise) {
  const PluckParams p = pluck_params(f0);
  const size_t burst = noise.size();
  double mean = 0;
  for (double v : noise) mean += v / double(burst);
  std::vector<double> e(static_cast<size_t>(L), 0.0), u(e.size()), a(e.size()), y(e.size());
  for (size_t j = 0; j < burst && j < e.size(); ++j) e[j] = noise[j] - mean;
  const auto at = [](const std::vector<double>& v, int64_t j) { return j < 0 ? 0.0 : v[size_t(j)]; };
  double peak = 0;
  for (int64_t j = 0; j < L; ++j) {
    u[size_t(j)] = at(y, j - p.N);
    a[size_t(j)] = p.c * u[size_t(j)] + at(u, j - 1) - p.c * at(a, j - 1);
    y[size_t(j)] = e[size_t(j)] + p.rho * ((1 - p.S) * a[size_t(j)] + p.S * at(a, j - 1));
    peak = std::max(peak, std::fabs(y[size_t(j)]));
  }
  for (int64_t j = 0; j < L; ++j) y[size_t(j)] *= std::min(1.0, (double(L) / kFs - double(j) / kFs) / 0.020) / peak;
  return y;
}

// A Hann-windowed stretch of a signal and its spectrum at any frequency
// (a direct DTFT, so the frequency grid is as fine as asked).
class Window {
 public:
  Window(const std::vector<double>& x, size_t begin, size_t end) : xw_(x.begin() + long(begin), x.begin() + long(end)) {
    for (size_t j = 0; j < xw_.size(); ++j)
      xw_[j] *= 0.5 - 0.5 * std::cos(2 * kPi * (double(j) + 0.5) / double(xw_.size()));
  }
  double magnitude(double f) const {
    const std::complex<double> step = std::polar(1.0, -2 * kPi * f / kFs);
    std::complex<double> z = 1, acc = 0;
    for (double v : xw_) acc += v * z, z *= step;
    return std::abs(acc);
  }

 private:
  std::vector<double> xw_;
};

// The spectral peak nearest f0 in cents from f0: a search over +-50 cents in
// 1-cent steps, then 0.01-cent steps and a parabola through the log
// magnitudes. NaN when the peak lies on the edge of the search.
double peak_offset_cents(const std::vector<double>& x, double f0) {
  const Window w(x, 0, x.size());
  const auto mag = [&](double cents) { return std::log(w.magnitude(f0 * std::exp2(cents / 1200))); };
  int coarse = -50;
  for (int c = -50; c <= 50; ++c)
    if (mag(c) > mag(coarse)) coarse = c;
  if (std::abs(coarse) == 50) return NAN;
  std::vector<double> m;
  for (int i = -150; i <= 150; ++i) m.push_back(mag(coarse + i * 0.01));
  const size_t i = size_t(std::max_element(m.begin() + 1, m.end() - 1) - m.begin());
  const double shift = 0.5 * (m[i - 1] - m[i + 1]) / (m[i - 1] - 2 * m[i] + m[i + 1]);
  return coarse + (double(i) - 150 + shift) * 0.01;
}

// The samples of a 16-bit PCM mono 16 kHz WAV, read chunk by chunk.
std::vector<int16_t> read_pcm16_wav(const fs::path& path) {
  const std::string b = slurp(path);
  const auto u32 = [&](size_t at) {
    return uint32_t(uint8_t(b[at])) | uint32_t(uint8_t(b[at + 1])) << 8 | uint32_t(uint8_t(b[at + 2])) << 16 |
           uint32_t(uint8_t(b[at + 3])) << 24;
  };
  const auto u16 = [&](size_t at) { return uint16_t(uint8_t(b[at]) | uint8_t(b[at + 1]) << 8); };
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) return {};
  bool fmt_ok = false;
  for (size_t at = 12; at + 8 <= b.size(); at += 8 + ((u32(at + 4) + 1) & ~1u)) {
    const std::string id = b.substr(at, 4);
    const size_t size = u32(at + 4);
    if (id == "fmt ") fmt_ok = u16(at + 8) == 1 && u16(at + 10) == 1 && u32(at + 12) == 16000 && u16(at + 22) == 16;
    if (id == "data" && fmt_ok && at + 8 + size <= b.size()) {
      std::vector<int16_t> v(size / 2);
      for (size_t i = 0; i < v.size(); ++i) v[i] = int16_t(u16(at + 8 + 2 * i));
      return v;
    }
  }
  return {};
}

}  // namespace

TEST(Melodies, PluckTestVectors) {
  struct Row {
    int midi;
    double f0;
    int N;
    double c, S, rho;
  };
  for (const Row& r :
       {Row{48, 130.813, 121, 0.103664, 0.5, 0.948877}, Row{69, 440.000, 35, 0.073486, 0.5, 0.988108},
        Row{81, 880.000, 17, -0.015045, 0.153699, 0.9999}, Row{93, 1760.000, 8, -0.039574, 0.016889, 0.9999}}) {
    SCOPED_TRACE("MIDI " + std::to_string(r.midi));
    EXPECT_NEAR(midi_to_hz(r.midi), r.f0, 5e-4);
    const PluckParams p = pluck_params(midi_to_hz(r.midi));
    EXPECT_EQ(p.N, r.N);
    EXPECT_NEAR(p.c, r.c, 5e-7);
    EXPECT_NEAR(p.S, r.S, 5e-7);
    EXPECT_NEAR(p.rho, r.rho, 5e-7);
  }
}

TEST(Melodies, Timing) {
  const std::vector<int64_t> on140 = melody_onsets(140);
  EXPECT_EQ(std::vector<int64_t>(on140.begin(), on140.begin() + 5),
            (std::vector<int64_t>{0, 3429, 6857, 10286, 13714}));
  const std::map<int, std::pair<int, int64_t>> table{
      {80, {10, 60000}}, {100, {13, 62400}}, {120, {16, 64000}}, {140, {18, 61714}}};
  for (const auto& [bpm, row] : table) {
    const std::vector<int64_t> on = melody_onsets(bpm);
    EXPECT_EQ(int(on.size()) - 1, row.first) << bpm << " BPM";
    EXPECT_EQ(on.back(), row.second) << bpm << " BPM";
    for (size_t i = 0; i < on.size(); ++i) EXPECT_EQ(on[i], std::llround(double(i) * 480000 / bpm)) << bpm;
  }
  for (const auto& [word, bpm] : kBpm) EXPECT_EQ(melody_bpm(word), bpm);
  EXPECT_THROW(melody_bpm("andante"), fm::Error);
}

TEST(Melodies, CaptionsAreTheSpecsGrammar) {
  EXPECT_EQ(melody_keys(), (std::vector<std::string>{"C major", "D major", "E major", "F major", "G major", "A major",
                                                     "A minor", "D minor", "E minor"}));
  EXPECT_EQ(melody_tempos(), (std::vector<std::string>{"slow", "moderate", "fast", "very fast"}));
  EXPECT_EQ(melody_timbres(),
            (std::vector<std::string>{"sine wave", "square wave", "sawtooth wave", "plucked string"}));
  EXPECT_EQ(melody_registers(), (std::vector<std::string>{"low", "high"}));
  const std::vector<std::string> all = melody_captions();
  EXPECT_EQ(all.size(), 288u);
  EXPECT_EQ(std::set<std::string>(all.begin(), all.end()).size(), 288u);
  const std::regex grammar(
      "a (slow|moderate|fast|very fast) melody in [CDEFGA] (major|minor) played on a "
      "(sine wave|square wave|sawtooth wave|plucked string), (low|high) register");
  for (const std::string& c : all) EXPECT_TRUE(std::regex_match(c, grammar)) << c;
  EXPECT_EQ(all.front(), "a slow melody in C major played on a sine wave, low register");
  EXPECT_EQ(melody_caption("A minor", "slow", "plucked string", "low"),
            "a slow melody in A minor played on a plucked string, low register");
  EXPECT_EQ(melody_caption("D major", "very fast", "sine wave", "high"),
            "a very fast melody in D major played on a sine wave, high register");
  EXPECT_THROW(melody_caption("B major", "slow", "sine wave", "low"), fm::Error);
}

// Section 7 on one clip of each of many fresh samples: file shape, peak,
// silence, timing, pitches, the degree walk, the caption.
TEST(Melodies, ClipInvariants) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::set<std::string> captions = [] {
    const auto v = melody_captions();
    return std::set<std::string>(v.begin(), v.end());
  }();
  for (int64_t i = 0; i < 120; ++i) {
    SCOPED_TRACE("index " + std::to_string(i));
    const MelodySample s = clip(seed, i, i % 2 ? "val" : "train");
    ASSERT_EQ(s.samples.size(), size_t(kMelodySamples));
    float peak = 0;
    for (float v : s.samples) peak = std::max(peak, std::fabs(v));
    EXPECT_EQ(peak, 0.5f);

    EXPECT_EQ(s.bpm, kBpm.at(s.tempo));
    EXPECT_EQ(s.onsets, melody_onsets(s.bpm));
    const size_t n = s.midi.size();
    ASSERT_EQ(s.onsets.size(), n + 1);
    for (size_t j = size_t(s.onsets.back()); j < s.samples.size(); ++j) ASSERT_EQ(s.samples[j], 0.0f) << j;
    for (size_t k = 0; k < n; ++k) {  // every note sounds
      double energy = 0;
      for (int64_t j = s.onsets[k]; j < s.onsets[k + 1]; ++j)
        energy += double(s.samples[size_t(j)]) * s.samples[size_t(j)];
      EXPECT_GT(energy, 1.0) << "note " << k;
    }

    const int tonic = tonic_of(s);
    const auto& scale = kKeySpecs.at(s.key).minor ? kMinor : kMajor;
    EXPECT_EQ(s.midi.front(), tonic);
    EXPECT_EQ((s.midi.back() - tonic) % 12, 0);
    for (size_t k = 0; k < n; ++k) {
      const int m = s.midi[k];
      EXPECT_TRUE(std::count(scale.begin(), scale.end(), ((m - tonic) % 12 + 12) % 12)) << "MIDI " << m;
      const bool low = s.register_ == "low";
      EXPECT_TRUE(low ? m >= 48 && m <= 69 : m >= 72 && m <= 93) << s.register_ << " MIDI " << m;
      if (k > 0) {
        EXPECT_NE(m, s.midi[k - 1]);
      }
    }
    std::vector<int> d;
    for (int m : s.midi) d.push_back(degree_of(s, m));
    for (size_t k = 1; k + 1 < n; ++k) EXPECT_TRUE(std::abs(d[k] - d[k - 1]) == 1 || std::abs(d[k] - d[k - 1]) == 2);
    EXPECT_TRUE(d[n - 2] != 0 && d[n - 2] != 7) << d[n - 2];
    EXPECT_EQ(d[n - 1], d[n - 2] <= 3 ? 0 : 7);

    EXPECT_EQ(s.caption,
              "a " + s.tempo + " melody in " + s.key + " played on a " + s.timbre + ", " + s.register_ + " register");
    EXPECT_TRUE(captions.count(s.caption));

    MelodyOptions o;
    o.seed = seed;
    o.split = i % 2 ? "val" : "train";
    const MelodySample score = generate_melody_score(o, i);
    EXPECT_TRUE(score.samples.empty());
    EXPECT_EQ(score.caption, s.caption);
    EXPECT_EQ(score.midi, s.midi);
  }
}

// The mix: the additive timbres' clips are their notes, laid end to end and
// scaled together to a peak of 0.5.
TEST(Melodies, ClipIsItsNotesScaledTogether) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  int checked = 0;
  for (int64_t i = 0; checked < 6; ++i) {
    const MelodySample s = clip(seed, i);
    if (s.timbre == "plucked string") continue;
    std::vector<double> x(kMelodySamples, 0.0);
    double peak = 0;
    for (size_t k = 0; k < s.midi.size(); ++k) {
      const int64_t L = s.onsets[k + 1] - s.onsets[k];
      for (int64_t j = 0; j < L; ++j) {
        const double t = double(j) / kFs;
        const double v = spec_envelope(t, double(L)) * spec_additive(s.timbre, midi_to_hz(s.midi[k]), t);
        x[size_t(s.onsets[k] + j)] = v;
        peak = std::max(peak, std::fabs(v));
      }
    }
    for (size_t j = 0; j < x.size(); ++j) ASSERT_NEAR(s.samples[j], 0.5 * x[j] / peak, 1e-6) << s.caption << " " << j;
    ++checked;
  }
}

// Sine, square and sawtooth notes equal the spec's formulas (so two correct
// implementations agree far within 1 LSB) and hold >= 0.8 of their waveform
// through the middle of the note.
TEST(Melodies, AdditiveNotesAndEnvelope) {
  for (const std::string timbre : {"sine wave", "square wave", "sawtooth wave"})
    for (int midi : {48, 60, 69, 72, 81, 93})
      for (int64_t L : {6000, 4800, 4000, 3429, 3428, 16000}) {
        SCOPED_TRACE(timbre + " MIDI " + std::to_string(midi) + " L " + std::to_string(L));
        const std::vector<double> note = render_melody_note(timbre, midi, L, uint64_t(0));
        ASSERT_EQ(note.size(), size_t(L));
        const double f0 = midi_to_hz(midi);
        double worst = 0, least_mid_gain = 1;
        for (int64_t j = 0; j < L; ++j) {
          const double t = double(j) / kFs, wave = spec_additive(timbre, f0, t);
          worst = std::max(worst, std::fabs(note[size_t(j)] - spec_envelope(t, double(L)) * wave));
          EXPECT_NEAR(melody_envelope(t, L), spec_envelope(t, double(L)), 1e-15);
          if (t >= 0.010 && t <= double(L) / kFs - 0.020 && std::fabs(wave) > 0.05)
            least_mid_gain = std::min(least_mid_gain, note[size_t(j)] / wave);
        }
        EXPECT_LT(worst, 1e-9);
        EXPECT_GE(least_mid_gain, 0.8 - 1e-9);
        EXPECT_EQ(note[0], 0.0);  // the attack starts from silence
      }
  EXPECT_THROW(render_melody_note("oboe", 60, 100, uint64_t(0)), fm::Error);
  EXPECT_THROW(render_melody_note("sine wave", 60, 0, uint64_t(0)), fm::Error);
}

// Plucks equal the spec's loop fed the same noise; the noise is round(P)
// values with their mean removed; the note peaks at 1.
TEST(Melodies, PluckFollowsTheSpecsLoop) {
  std::mt19937_64 rng(fresh_seed());
  for (int midi : {48, 55, 69, 75, 81, 88, 93})
    for (int64_t L : {6000, 3429, 100}) {
      SCOPED_TRACE("MIDI " + std::to_string(midi) + " L " + std::to_string(L));
      std::vector<double> noise;
      const auto draw = [&] { return noise.emplace_back(std::uniform_real_distribution<double>(-1, 1)(rng)); };
      const std::vector<double> note = render_melody_note("plucked string", midi, L, draw);
      EXPECT_EQ(noise.size(), size_t(std::lround(kFs / midi_to_hz(midi))));
      const std::vector<double> want = spec_pluck(midi_to_hz(midi), L, noise);
      double worst = 0, peak = 0;
      for (size_t j = 0; j < note.size(); ++j) {
        worst = std::max(worst, std::fabs(note[j] - want[j]));
        peak = std::max(peak, std::fabs(note[j]));
      }
      EXPECT_LT(worst, 1e-9);
      if (L > 1000) {
        EXPECT_NEAR(peak, 1.0, 1e-12);  // the peak comes long before the release
      }
    }
  const std::vector<double> flat = render_melody_note("plucked string", 60, 1000, [] { return 0.25; });
  EXPECT_EQ(*std::max_element(flat.begin(), flat.end()), 0.0);  // a constant excitation is all mean
}

// Each timbre's fundamental is within 1 cent of f0 on a 1 s note.
TEST(Melodies, FundamentalWithinOneCent) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const std::string timbre : {"sine wave", "square wave", "sawtooth wave", "plucked string"})
    for (int midi : {48, 57, 69, 72, 81, 93}) {
      const std::vector<double> note = render_melody_note(timbre, midi, 16000, seed + uint64_t(midi));
      const double cents = peak_offset_cents(note, midi_to_hz(midi));
      EXPECT_LT(std::fabs(cents), 1.0) << timbre << " MIDI " << midi << ": " << cents << " cents";
    }
}

// The pluck's fundamental falls 60 dB per second: measured between Hann
// windows at 0.1-0.3 s and 0.6-0.8 s (30 dB apart).
TEST(Melodies, PluckDecaysSixtyDecibelsPerSecond) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int midi : {48, 60, 69, 81, 93}) {
    const std::vector<double> note = render_melody_note("plucked string", midi, 16000, seed + uint64_t(midi));
    const double f0 = midi_to_hz(midi);
    const double early = Window(note, 1600, 4800).magnitude(f0), late = Window(note, 9600, 12800).magnitude(f0);
    const double db_per_s = 20 * std::log10(early / late) / 0.5;
    EXPECT_NEAR(db_per_s, 60, 1) << "MIDI " << midi;
  }
}

TEST(Melodies, Deterministic) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int64_t i : {0, 1, 7, 1000003}) {
    const MelodySample a = clip(seed, i), b = clip(seed, i);
    EXPECT_EQ(a.samples, b.samples);
    EXPECT_EQ(a.caption, b.caption);
    EXPECT_EQ(a.midi, b.midi);
    EXPECT_NE(a.samples, clip(seed, i + 1).samples);
    EXPECT_NE(a.samples, clip(seed, i, "val").samples);
    EXPECT_NE(a.samples, clip(seed + 1, i).samples);
  }
  // The same pluck noise seed renders the same note; another one, another note.
  EXPECT_EQ(render_melody_note("plucked string", 60, 2000, uint64_t(5)),
            render_melody_note("plucked string", 60, 2000, uint64_t(5)));
  EXPECT_NE(render_melody_note("plucked string", 60, 2000, uint64_t(5)),
            render_melody_note("plucked string", 60, 2000, uint64_t(6)));
  MelodyOptions bad;
  bad.split = "test";
  EXPECT_THROW(generate_melody_sample(bad, 0), fm::Error);
  EXPECT_THROW(generate_melody_sample({}, -1), fm::Error);
}

// Train and val share no clip: their scores over many indices differ.
TEST(Melodies, TrainAndValDiffer) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  MelodyOptions train, val;
  train.seed = val.seed = seed;
  val.split = "val";
  int same = 0;
  for (int64_t i = 0; i < 200; ++i) {
    const MelodySample a = generate_melody_score(train, i), b = generate_melody_score(val, i);
    same += a.caption == b.caption && a.midi == b.midi;
  }
  EXPECT_LT(same, 10);  // equal scores happen by chance (about 1 in 288 x the walk's odds)
}

// Each attribute, and the 288 combinations, drawn uniformly: chi-square
// bounds that a uniform draw exceeds with probability below 1e-7.
TEST(Melodies, AttributesAreUniform) {
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  MelodyOptions o;
  o.seed = seed;
  const int n = 5760;  // 20 per caption
  std::map<std::string, int> key, tempo, timbre, reg, caption;
  for (int64_t i = 0; i < n; ++i) {
    const MelodySample s = generate_melody_score(o, i);
    ++key[s.key], ++tempo[s.tempo], ++timbre[s.timbre], ++reg[s.register_], ++caption[s.caption];
  }
  const auto chi2 = [&](const std::map<std::string, int>& counts, size_t categories) {
    EXPECT_EQ(counts.size(), categories);
    const double expected = double(n) / double(categories);
    double x = 0;
    for (const auto& [word, c] : counts) x += (c - expected) * (c - expected) / expected;
    return x + double(categories - counts.size()) * expected;
  };
  EXPECT_LT(chi2(key, 9), 52);         // 8 degrees of freedom
  EXPECT_LT(chi2(tempo, 4), 37);       // 3
  EXPECT_LT(chi2(timbre, 4), 37);      // 3
  EXPECT_LT(chi2(reg, 2), 29);         // 1
  EXPECT_LT(chi2(caption, 288), 470);  // 287
}

// `fm prepare melodies` end to end: the WAVs hold round(32767 x) of the
// generator's clips, captions.jsonl describes them, prompts, bad flags.
TEST(Melodies, PrepareWritesTheSpecsFiles) {
  if (!fs::exists(fm_binary())) GTEST_SKIP() << fm_binary() << " is not built";
  const uint64_t seed = fresh_seed() >> 2;  // fits the flag's int64
  SCOPED_TRACE("seed " + std::to_string(seed));
  const fs::path dir = fs::temp_directory_path() / ("fm_test_melodies_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path out = dir / "val";
  const FmRun run =
      run_fm("prepare melodies --n 3 --seed " + std::to_string(seed) + " --split val --out " + out.string(), dir);
  ASSERT_EQ(run.code, 0) << run.output;
  std::istringstream jsonl(slurp(out / "captions.jsonl"));
  std::vector<std::string> lines;
  for (std::string l; std::getline(jsonl, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u);
  for (int64_t i = 0; i < 3; ++i) {
    const MelodySample s = clip(seed, i, "val");
    char name[32];
    std::snprintf(name, sizeof name, "mel_%06lld.wav", (long long)i);
    const std::vector<int16_t> pcm = read_pcm16_wav(out / name);
    ASSERT_EQ(pcm.size(), size_t(kMelodySamples)) << name;
    int mismatches = 0;
    for (size_t j = 0; j < pcm.size(); ++j) mismatches += pcm[j] != std::lround(32767.0 * double(s.samples[j]));
    EXPECT_EQ(mismatches, 0) << name;
    int peak = 0;
    for (int16_t v : pcm) peak = std::max(peak, std::abs(int(v)));
    EXPECT_EQ(peak, 16384);  // round(32767 * 0.5)
    const std::string& l = lines[size_t(i)];
    EXPECT_NE(l.find("\"file\":\"" + std::string(name) + "\""), std::string::npos) << l;
    EXPECT_NE(l.find("\"caption\":\"" + s.caption + "\""), std::string::npos) << l;
    EXPECT_NE(l.find("\"key\":\"" + s.key + "\""), std::string::npos) << l;
    EXPECT_NE(l.find("\"tempo_bpm\":" + std::to_string(s.bpm)), std::string::npos) << l;
    EXPECT_NE(l.find("\"timbre\":\"" + s.timbre + "\""), std::string::npos) << l;
    EXPECT_NE(l.find("\"register\":\"" + s.register_ + "\""), std::string::npos) << l;
    std::string midi = "\"midi\":[";
    for (size_t k = 0; k < s.midi.size(); ++k) midi += (k ? "," : "") + std::to_string(s.midi[k]);
    EXPECT_NE(l.find(midi + "]"), std::string::npos) << l;
  }

  const FmRun prompts =
      run_fm("prepare melodies --prompts --k 2 --out " + (dir / "eval" / "prompts.jsonl").string(), dir);
  ASSERT_EQ(prompts.code, 0) << prompts.output;
  std::istringstream p(slurp(dir / "eval" / "prompts.jsonl"));
  const std::vector<std::string> all = melody_captions();
  int count = 0;
  for (std::string l; std::getline(p, l); ++count) {
    char name[32];
    std::snprintf(name, sizeof name, "gen_%06d.wav", count);
    EXPECT_EQ(l, "{\"caption\":\"" + all[size_t(count % 288)] + "\",\"file\":\"" + name + "\"}");
  }
  EXPECT_EQ(count, 576);

  for (const auto& [args, message] :
       std::vector<std::pair<std::string, std::string>>{{"--n 0 --out x", "--n must be at least 1"},
                                                        {"--n 2 --split test --out x", "--split must be train or val"},
                                                        {"--n 2", "--out is required"},
                                                        {"--prompts --k 0 --out p.jsonl", "--k must be at least 1"},
                                                        {"--prompts --k 1", "--out is required"}}) {
    const FmRun r = run_fm("prepare melodies " + args, dir);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << ": " << r.output;
  }
  fs::remove_all(dir);
}

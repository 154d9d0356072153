// The captioned-melodies checker (../shared/specs/captioned-melodies.md): its
// grammar, and its verdicts on the generator's clips: correct captions pass,
// captions with one attribute changed fail on that attribute, and the
// verdicts survive what a neural codec does to audio (noise, gain, a shift,
// smearing, timing jitter, a slight change of speed).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <numbers>
#include <random>
#include <set>
#include <thread>

#include "fm/data/melodies.h"
#include "fm/data/melodies_checker.h"
#include "fm/error.h"

using namespace fm;
using namespace fm::data;

namespace {

// The grammar's word lists, copied from the spec.
const std::vector<std::string> kKeys{"C major", "D major", "E major", "F major", "G major",
                                     "A major", "A minor", "D minor", "E minor"};
const std::vector<std::string> kTempos{"slow", "moderate", "fast", "very fast"};
const std::vector<std::string> kTimbres{"sine wave", "square wave", "sawtooth wave", "plucked string"};
const std::vector<std::string> kRegisters{"low", "high"};

constexpr int kClips = 320;

std::string caption_of(const std::string& tempo, const std::string& key, const std::string& timbre,
                       const std::string& register_word) {
  return "a " + tempo + " melody in " + key + " played on a " + timbre + ", " + register_word + " register";
}

std::string caption_of(const MelodyCaption& c) { return caption_of(c.tempo, c.key, c.timbre, c.register_word); }

// f(i) for i in [0, n), on every core (generating and reading are pure).
void parallel_for(int n, const std::function<void(int)>& f) {
  const int threads = int(std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = t; i < n; i += threads) f(i);
    });
  for (std::thread& th : pool) th.join();
}

// kClips clips from a fresh seed (printed, to repeat a failure with), so the
// checker is never judged on the clips it was tuned on.
const std::vector<MelodySample>& clips() {
  static const std::vector<MelodySample> all = [] {
    std::random_device device;
    MelodyOptions o;
    o.seed = uint64_t(device()) << 32 | device();
    o.split = "val";
    std::printf("clips 0-%d of seed %llu, split val\n", kClips - 1, static_cast<unsigned long long>(o.seed));
    std::vector<MelodySample> s(kClips);
    parallel_for(kClips, [&](int i) { s[size_t(i)] = generate_melody_sample(o, i); });
    return s;
  }();
  return all;
}

// The clean clips as read, once.
const std::vector<MelodyReading>& readings() {
  static const std::vector<MelodyReading> all = [] {
    const std::vector<MelodySample>& c = clips();
    std::vector<MelodyReading> r(c.size());
    parallel_for(int(c.size()), [&](int i) {
      r[size_t(i)] = read_melody(c[size_t(i)].samples.data(), int64_t(c[size_t(i)].samples.size()), 16000);
    });
    return r;
  }();
  return all;
}

struct Rates {
  double key = 0, tempo = 0, timbre = 0, register_ok = 0, all = 0;
};

void print(const char* what, const Rates& r) {
  std::printf("%-40s key %5.1f%%  tempo %5.1f%%  timbre %5.1f%%  register %5.1f%%  all %5.1f%%\n", what, 100 * r.key,
              100 * r.tempo, 100 * r.timbre, 100 * r.register_ok, 100 * r.all);
}

Rates tally(const std::vector<MelodyCheck>& checks) {
  Rates r;
  for (const MelodyCheck& k : checks)
    r.key += k.key, r.tempo += k.tempo, r.timbre += k.timbre, r.register_ok += k.register_ok, r.all += k.all();
  for (double* v : {&r.key, &r.tempo, &r.timbre, &r.register_ok, &r.all}) *v /= double(checks.size());
  return r;
}

// The pass rates of the clean clips judged against `caption_for` each sample.
Rates judged(const std::function<std::string(const MelodySample&, std::mt19937&)>& caption_for) {
  const std::vector<MelodySample>& c = clips();
  std::vector<MelodyCheck> checks(c.size());
  for (size_t i = 0; i < c.size(); ++i) {
    std::mt19937 rng(uint32_t(2000 + i));
    checks[i] = check_melody(readings()[i], parse_melody_caption(caption_for(c[i], rng)));
  }
  return tally(checks);
}

// The pass rates of the clips changed by `degrade` (seeded by the clip's
// index), against their own captions.
Rates degraded(const std::function<std::vector<float>(const MelodySample&, std::mt19937&)>& degrade) {
  const std::vector<MelodySample>& c = clips();
  std::vector<MelodyCheck> checks(c.size());
  parallel_for(int(c.size()), [&](int i) {
    std::mt19937 rng(uint32_t(1000 + i));
    const std::vector<float> x = degrade(c[size_t(i)], rng);
    const MelodyReading reading = read_melody(x.data(), int64_t(x.size()), 16000);
    checks[size_t(i)] = check_melody(reading, parse_melody_caption(c[size_t(i)].caption));
  });
  return tally(checks);
}

// White Gaussian noise at `snr_db` below the clip's mean power.
std::vector<float> with_noise(std::vector<float> x, double snr_db, std::mt19937& rng) {
  double power = 0;
  for (float v : x) power += double(v) * v;
  std::normal_distribution<double> noise(0, std::sqrt(power / double(x.size()) * std::pow(10, -snr_db / 10)));
  for (float& v : x) v += float(noise(rng));
  return x;
}

std::vector<float> with_gain(std::vector<float> x, double gain) {
  for (float& v : x) v *= float(gain);
  return x;
}

// Delayed (or advanced) by up to `most` samples, the gap filled with silence.
std::vector<float> shifted(const std::vector<float>& x, int most, std::mt19937& rng) {
  const int by = std::uniform_int_distribution<int>(-most, most)(rng);
  std::vector<float> y(x.size(), 0.0f);
  for (int64_t i = 0; i < int64_t(x.size()); ++i)
    if (i - by >= 0 && i - by < int64_t(x.size())) y[size_t(i)] = x[size_t(i - by)];
  return y;
}

// Half the clip plus half of it blurred by a 1 ms Hann kernel: transients
// spread and the top octave dulled (about -6 dB at 2 kHz and above).
std::vector<float> smeared(const std::vector<float>& x) {
  constexpr int kTaps = 16;
  std::array<double, kTaps> h{};
  double sum = 0;
  for (int k = 0; k < kTaps; ++k)
    sum += h[size_t(k)] = 0.5 - 0.5 * std::cos(2 * std::numbers::pi * (k + 1) / (kTaps + 1));
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double blur = 0;
    for (int k = 0; k < kTaps && size_t(k) <= i; ++k) blur += h[size_t(k)] / sum * x[i - size_t(k)];
    y[i] = float(0.5 * x[i] + 0.5 * blur);
  }
  return y;
}

// Played `factor` times as fast (linear interpolation): every pitch up by
// 12 log2(factor) semitones and the tempo up by the same factor.
std::vector<float> sped_up(const std::vector<float>& x, double factor) {
  std::vector<float> y(x.size(), 0.0f);
  for (size_t i = 0; i < y.size(); ++i) {
    const double t = double(i) * factor;
    const size_t j = size_t(t);
    if (j + 1 >= x.size()) break;
    y[i] = float((1 - (t - double(j))) * x[j] + (t - double(j)) * x[j + 1]);
  }
  return y;
}

// The sample's notes rendered again (the generator's own note renderer,
// fresh pluck noise) with every inner note boundary moved by up to
// `most_shift` samples and each note's level changed by up to `most_db`,
// then scaled to a peak of 0.5: a model that keeps the beat and the
// loudness only roughly.
std::vector<float> rerendered(const MelodySample& s, int most_shift, double most_db, std::mt19937& rng) {
  std::vector<int64_t> on = s.onsets;
  std::uniform_int_distribution<int> shift(-most_shift, most_shift);
  std::uniform_real_distribution<double> level(-most_db, most_db);
  for (size_t i = 1; i + 1 < on.size(); ++i) on[i] += shift(rng);
  std::vector<double> mix(s.samples.size(), 0.0);
  for (size_t i = 0; i < s.midi.size(); ++i) {
    const std::vector<double> note = render_melody_note(s.timbre, s.midi[i], on[i + 1] - on[i], uint64_t(rng()));
    const double gain = std::pow(10, level(rng) / 20);
    for (size_t k = 0; k < note.size(); ++k) mix[size_t(on[i]) + k] = gain * note[k];
  }
  double peak = 0;
  for (double v : mix) peak = std::max(peak, std::fabs(v));
  std::vector<float> y(mix.size());
  for (size_t i = 0; i < mix.size(); ++i) y[i] = float(0.5 * mix[i] / peak);
  return y;
}

template <class T>
T other_than(const std::vector<T>& options, const T& avoid, std::mt19937& rng) {
  std::vector<T> left;
  for (const T& o : options)
    if (o != avoid) left.push_back(o);
  return left[std::uniform_int_distribution<size_t>(0, left.size() - 1)(rng)];
}

}  // namespace

TEST(MelodiesChecker, ParsesEveryCaption) {
  const std::vector<std::string> captions = melody_captions();
  ASSERT_EQ(captions.size(), 288u);
  std::set<std::string> seen;
  for (const std::string& caption : captions) {
    const MelodyCaption c = parse_melody_caption(caption);
    EXPECT_EQ(caption_of(c), caption);
    EXPECT_EQ(c.key, c.tonic + " " + c.mode);
    EXPECT_EQ(c.bpm, melody_bpm(c.tempo));
    seen.insert(caption);
  }
  EXPECT_EQ(seen.size(), 288u);
  for (const std::string& key : kKeys)
    for (const std::string& tempo : kTempos)
      for (const std::string& timbre : kTimbres)
        for (const std::string& reg : kRegisters) EXPECT_TRUE(seen.count(caption_of(tempo, key, timbre, reg)));
  const MelodyCaption c =
      parse_melody_caption("a very fast melody in D minor played on a plucked string, low register");
  EXPECT_EQ(c.tempo, "very fast");
  EXPECT_EQ(c.bpm, 140);
  EXPECT_EQ(c.tonic, "D");
  EXPECT_EQ(c.mode, "minor");
  EXPECT_EQ(c.timbre, "plucked string");
  EXPECT_EQ(c.register_word, "low");
}

TEST(MelodiesChecker, RejectsCaptionsOutsideTheGrammar) {
  const std::vector<std::string> bad{
      "",
      "a slow melody in C minor played on a sine wave, low register",  // not one of the nine keys
      "a slow melody in B major played on a sine wave, low register",
      "a slow melody in c major played on a sine wave, low register",
      "a quick melody in C major played on a sine wave, low register",
      "A slow melody in C major played on a sine wave, low register",
      "a slow melody in C major played on a violin, low register",
      "a slow melody in C major played on a sine wave, middle register",
      "a slow melody in C major played on a sine wave low register",
      "a slow melody in C major played on a sine wave, low",
      "a slow melody in C major played on a sine wave, low register ",
      "a slow  melody in C major played on a sine wave, low register",
      "a slow melody in C major played on a sine wave, low register.",
      "a slow melody in C dorian played on a sine wave, low register",
      "a very slow melody in C major played on a sine wave, low register",
  };
  for (const std::string& caption : bad) {
    try {
      parse_melody_caption(caption);
      ADD_FAILURE() << "accepted: '" << caption << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + caption + "'"), std::string::npos) << e.what();
    }
  }
}

TEST(MelodiesChecker, RejectsOtherRatesAndReadsSilenceAsNothing) {
  const std::vector<float> silence(64000, 0.0f);
  EXPECT_THROW(read_melody(silence.data(), int64_t(silence.size()), 44100), Error);
  const MelodyReading r = read_melody(silence.data(), int64_t(silence.size()), 16000);
  EXPECT_TRUE(r.notes.empty());
  EXPECT_FALSE(
      check_melody(r, parse_melody_caption("a fast melody in G major played on a sine wave, high register")).all());
  EXPECT_TRUE(read_melody(silence.data(), 0, 16000).notes.empty());
}

// The notes as read match the generator's score: the same count, the same
// MIDI numbers within 10 cents, and onsets within 5 ms.
TEST(MelodiesChecker, ReadsTheGeneratorsNotes) {
  const std::vector<MelodySample>& c = clips();
  int exact = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const MelodySample& s = c[i];
    const std::vector<MelodyNote>& notes = readings()[i].notes;
    bool same = notes.size() == s.midi.size();
    for (size_t k = 0; same && k < notes.size(); ++k)
      same = std::fabs(notes[k].midi - s.midi[k]) <= 0.1 && std::abs(notes[k].onset - s.onsets[k]) <= 80;
    exact += same;
  }
  const double rate = double(exact) / double(c.size());
  std::printf("clips read note for note: %.1f%%\n", 100 * rate);
  EXPECT_GE(rate, 0.99);
}

TEST(MelodiesChecker, PassesTheGeneratorsClips) {
  const Rates r = judged([](const MelodySample& s, std::mt19937&) { return s.caption; });
  print("the generator's clips", r);
  EXPECT_GE(r.all, 0.99);
}

// Each wrong caption changes one attribute to another of its values; all()
// must then fail, and on that attribute.
TEST(MelodiesChecker, FailsWrongCaptions) {
  const Rates key = judged([](const MelodySample& s, std::mt19937& rng) {
    return caption_of(s.tempo, other_than(kKeys, s.key, rng), s.timbre, s.register_);
  });
  const Rates tempo = judged([](const MelodySample& s, std::mt19937& rng) {
    return caption_of(other_than(kTempos, s.tempo, rng), s.key, s.timbre, s.register_);
  });
  const Rates timbre = judged([](const MelodySample& s, std::mt19937& rng) {
    return caption_of(s.tempo, s.key, other_than(kTimbres, s.timbre, rng), s.register_);
  });
  const Rates reg = judged([](const MelodySample& s, std::mt19937&) {
    return caption_of(s.tempo, s.key, s.timbre, s.register_ == "low" ? "high" : "low");
  });
  print("wrong key", key);
  print("wrong tempo", tempo);
  print("wrong timbre", timbre);
  print("wrong register", reg);
  for (const Rates* r : {&key, &tempo, &timbre, &reg}) EXPECT_LE(r->all, 0.02);
  // Keys that share a tonic (A, D and E major and minor) may differ only in
  // notes a short melody never plays, so a few clips fit both.
  EXPECT_LE(key.key, 0.02);
  EXPECT_LE(tempo.tempo, 0.01);
  EXPECT_LE(timbre.timbre, 0.01);
  EXPECT_LE(reg.register_ok, 0.01);
}

TEST(MelodiesChecker, SurvivesWhatACodecDoes) {
  struct Case {
    const char* name;
    std::function<std::vector<float>(const MelodySample&, std::mt19937&)> degrade;
  };
  const std::vector<Case> cases{
      {"white noise at 30 dB SNR",
       [](const MelodySample& s, std::mt19937& rng) { return with_noise(s.samples, 30, rng); }},
      {"noise, gain 0.3 and a shift of <= 5 ms",
       [](const MelodySample& s, std::mt19937& rng) {
         return shifted(with_gain(with_noise(s.samples, 30, rng), 0.3), 80, rng);
       }},
      {"smeared (1 ms blur)", [](const MelodySample& s, std::mt19937&) { return smeared(s.samples); }},
      {"note boundaries jittered 5 ms",
       [](const MelodySample& s, std::mt19937& rng) { return rerendered(s, 80, 0, rng); }},
      {"note levels varied +-6 dB", [](const MelodySample& s, std::mt19937& rng) { return rerendered(s, 0, 6, rng); }},
      {"played 1% fast (+17 cents)", [](const MelodySample& s, std::mt19937&) { return sped_up(s.samples, 1.01); }},
  };
  for (const Case& c : cases) {
    const Rates r = degraded(c.degrade);
    print(c.name, r);
    EXPECT_GE(r.all, 0.95) << c.name;
  }
}

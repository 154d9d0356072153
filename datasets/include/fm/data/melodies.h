#pragma once
// The captioned-melodies generator (../shared/specs/captioned-melodies.md):
// 4 s, 16 kHz mono clips of one synthesized monophonic melody, with a caption
// naming its tempo, key, instrument (timbre) and register, such as
// "a fast melody in G major played on a square wave, high register". Samples
// are the clip signal x in memory; writing WAVs and captions.jsonl is the job
// of `fm prepare melodies`.
//
// Sample i of a data set is a pure function of (options, i): each sample
// draws from its own Philox stream keyed by (seed, split, i): first the four
// attributes, then the degree walk, then each pluck's noise, so samples can
// be made in any order, on any number of threads, and never touch
// fm::default_generator(). Synthesis is in double precision.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fm::data {

constexpr int kMelodySampleRate = 16000;
constexpr int kMelodySamples = 64000;  // 4.0 s

struct MelodySample {
  std::vector<float> samples;   // kMelodySamples values of the clip signal x, peak exactly 0.5
  std::string caption;          // spec section 3
  std::string key;              // "G major", "A minor", ...: melody_keys()
  std::string tempo;            // slow | moderate | fast | very fast
  int bpm = 0;                  // 80 | 100 | 120 | 140
  std::string timbre;           // sine wave | square wave | sawtooth wave | plucked string
  std::string register_;        // low | high (`register` is a C++ keyword)
  std::vector<int> midi;        // the n note numbers
  std::vector<int64_t> onsets;  // n + 1 sample indices: note i spans [onsets[i], onsets[i+1])
};

struct MelodyOptions {
  uint64_t seed = 0;
  std::string split = "train";  // train | val: disjoint streams for the same seed
};

MelodySample generate_melody_sample(const MelodyOptions& options, int64_t index);
// The same sample without its audio (`samples` empty): the caption,
// attributes and notes, at a small fraction of the cost.
MelodySample generate_melody_score(const MelodyOptions& options, int64_t index);

// The attribute vocabularies, in the spec's order (section 2).
const std::vector<std::string>& melody_keys();
const std::vector<std::string>& melody_tempos();
const std::vector<std::string>& melody_timbres();
const std::vector<std::string>& melody_registers();
// The caption of one combination (throws fm::Error for a word outside the
// vocabularies), and all 288 of them: key-major, then tempo, timbre and
// register, each in vocabulary order (register varies fastest).
std::string melody_caption(const std::string& key, const std::string& tempo, const std::string& timbre,
                           const std::string& register_word);
std::vector<std::string> melody_captions();

// Timing (section 4): a tempo word's BPM, and the n + 1 onsets
// round(i * 480000 / bpm), i = 0..n, with n = floor(4.0 * bpm / 30).
int melody_bpm(const std::string& tempo);
std::vector<int64_t> melody_onsets(int bpm);
// 440 * 2^((midi - 69) / 12) Hz.
double midi_to_hz(int midi);

// Building blocks of section 6, exposed for tests and checkers.
// The envelope of the additive timbres at time t (s) into a note of
// `length` samples: 10 ms attack, decay to 0.8 (80 ms), 20 ms release.
double melody_envelope(double t, int64_t length);
// The fractional-delay Karplus-Strong loop for a fundamental f0 with
// T60 = 1 s: delay-line length N, allpass coefficient c, loop-lowpass
// weight S and loop gain rho.
struct PluckParams {
  int N;
  double c, S, rho;
};
PluckParams pluck_params(double f0);
// One note of `length` samples as it enters the mix (before the clip's peak
// scaling): sine, square or sawtooth times the envelope; the pluck normalised
// to peak 1 over the note, times the release ramp. `noise` returns the pluck's
// uniform(-1, 1) excitation values (round(16000 / f0) calls; the other
// timbres never call it). Throws fm::Error for an unknown timbre or a
// length below 1.
std::vector<double> render_melody_note(const std::string& timbre, int midi, int64_t length,
                                       const std::function<double()>& noise);
// The same with the noise from a Philox stream keyed by `noise_seed`.
std::vector<double> render_melody_note(const std::string& timbre, int midi, int64_t length, uint64_t noise_seed);

}  // namespace fm::data

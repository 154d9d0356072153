#pragma once
// Does a clip sound like its captioned-melodies caption? (section 9 of
// ../shared/specs/captioned-melodies.md: key, tempo, instrument, register).
// The checker sees only 16 kHz samples and the caption, and shares no code
// with the generator, so it can judge clips made by a text-to-music model as
// well as the data set itself. Nothing depends on exact sample values, the
// exact peak or exact onsets, so gain, a little noise, smearing and timing
// jitter (what a neural codec does) leave its verdict alone.
//
// How it reads a clip:
//   onsets   spectral flux: 32 ms Hann frames every 8 ms, log magnitudes
//            with a floor 14 dB under the clip's loudest bin (so noise adds
//            little), each frame against the one 16 ms before;
//            peaks above the flux's running median (+-120 ms), at least
//            80 ms apart and a quarter as strong as the clip's typical peak,
//            are note starts, then moved to the steepest rise of 2 ms energy
//            blocks just before (the flux peaks once an attack is over);
//            a note ends at the next start, the last one a median note length
//            later (or where the clip falls 60 dB below its loudest frame);
//   pitch    per note, its middle (from 20 % to 85 % of its length: no attack
//            or release): YIN (periodicity, whichever harmonics are strong;
//            a plucked string's are random), checked on a 4096-point
//            spectrum: an octave (or a twelfth) up when f's odd harmonics
//            are missing (YIN's whole-sample lags can find twice the period
//            of a high note first), down when clear peaks sit between f's
//            harmonics (YIN took a strong harmonic for the fundamental);
//            then refined on the spectral peak of the strongest of the first
//            four harmonics, as a fractional MIDI number;
//   tempo    the median inter-onset interval, then the mean period of the
//            intervals that are 1-3 of it long (BPM = 30 / period, eighth
//            notes); a caption's tempo holds within 8 %;
//   key      every note at least half a period long rounds to a pitch class
//            of the named key's scale (major, or harmonic minor), and the
//            first and last are on its tonic (no two of the nine keys share
//            a set of pitch classes, and the tonic separates C major from
//            A minor);
//   register the median note: MIDI below 70.5 is low (the data set's low
//            notes are 48-69, high ones 72-93);
//   timbre   from each note's harmonic amplitudes a_k (the strongest bin
//            within 1 % of k f0, up to 7600 Hz) and the slope of its frame
//            energies from 25 % to 75 % of its length, as medians over the
//            notes: a decay faster than 20 dB/s is the plucked string (its
//            fundamental falls 60 dB/s, the additive timbres hold a 0.8
//            sustain); otherwise overtones (sum over k >= 2 of a_k^2 / a_1^2)
//            below -20 dB are a sine; otherwise even over odd overtones below
//            -15 dB are a square (odd harmonics only), else a sawtooth (all
//            harmonics, at 1/k). The band limit leaves a 1760 Hz note two
//            to four partials, which is enough: k = 2 and 3 are always there.
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

// One caption, split into its parts.
struct MelodyCaption {
  std::string tempo;          // slow | moderate | fast | very fast
  int bpm = 0;                // 80 | 100 | 120 | 140
  std::string tonic;          // C D E F G A
  std::string mode;           // major | minor
  std::string key;            // "G major"
  std::string timbre;         // sine wave | square wave | sawtooth wave | plucked string
  std::string register_word;  // low | high
};

// Throws fm::Error, quoting the caption, when it is outside the grammar of
// spec section 3 (including a key that is not one of the nine, as "C minor").
MelodyCaption parse_melody_caption(const std::string& caption);

// A note as the checker hears it.
struct MelodyNote {
  int64_t onset = 0, end = 0;  // samples
  double midi = 0;             // fractional, from the spectral peak
  double confidence = 0;       // share of the note's spectral energy near harmonics of its f0, 0-1
  double overtone_db = 0;      // sum over k >= 2 of a_k^2 / a_1^2, dB
  double even_odd_db = 0;      // even over odd (k >= 3) overtone energy, dB
  double decay_db_per_s = 0;   // slope of the note's energy through its middle (negative: decaying)
};

struct MelodyReading {
  std::vector<MelodyNote> notes;
  double bpm = 0;             // 0 when fewer than two onsets were found
  std::string tempo;          // the named tempo within 8 % of bpm, else empty
  std::string key;            // the first of the nine keys that the notes fit, else empty
  std::string timbre;         // always one of the four words when there are notes
  std::string register_word;  // low | high; empty when there are no notes
  // The evidence, as medians over the notes.
  double median_midi = 0;
  double overtone_db = 0, even_odd_db = 0, decay_db_per_s = 0;
};

// Reads a mono clip; sample_rate must be 16000 (resample first otherwise:
// fm::Error). Any length and gain.
MelodyReading read_melody(const float* x, int64_t n, int sample_rate);

struct MelodyCheck {
  bool key = false, tempo = false, timbre = false, register_ok = false;
  bool all() const { return key && tempo && timbre && register_ok; }
};

// Compares a reading with a caption, one attribute at a time.
MelodyCheck check_melody(const MelodyReading& reading, const MelodyCaption& caption);

}  // namespace fm::data

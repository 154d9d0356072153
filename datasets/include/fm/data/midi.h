#pragma once
// Standard MIDI Files (format 0 and 1) read into what a caption needs: the
// tempo map, time and key signatures, program changes and notes, with times
// in seconds; and captions of clips [t0, t1) made from them, such as
//   "a fast piece at 126 BPM in D minor played by piano, strings and drums".
// Pure data code: rendering MIDI to audio is `fm prepare midi`'s job (with
// the fluidsynth program).
//
// The reader follows the SMF 1.0 specification: an MThd chunk (format,
// tracks, division), then MTrk chunks of delta-timed events with running
// status; chunks of other types are skipped. Meta and SysEx events do not
// cancel running status (as most players read files that rely on it).
// Anything else that does not fit (not MIDI, a truncated chunk, a chunk
// length past the end of the file, an event past its chunk, format 2, fewer
// tracks than the header announces, a meta event of the wrong length) throws
// one fm::Error naming the file and the byte offset:
//   "song.mid: offset 1234: track 2: event runs past the end of its chunk"
// A key signature whose values are out of range (Debian's simutrans-data has
// FF 59 02 FF FF) says nothing usable and is left out, not an error.
//
// The tracks are merged into one time line by tick; at one tick, tempo,
// signatures and program changes come before notes (so a program change
// written in another track at a note's tick sets that note's program), and
// notes keep their written order within a track (a repeated note's note off
// comes before its next note on). A note off ends the earliest open note of
// its channel and pitch; notes never switched off end with the file.
//
// Channels are 0-based: channel 9 is MIDI channel 10, General MIDI's drums.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

constexpr int kMidiDrumChannel = 9;

struct MidiTempo {  // FF 51
  int64_t tick = 0;
  double seconds = 0;
  int64_t us_per_quarter = 500000;  // 120 BPM, the default before any FF 51
  double bpm() const { return 60e6 / double(us_per_quarter); }
};

struct MidiTimeSignature {  // FF 58
  int64_t tick = 0;
  double seconds = 0;
  int numerator = 4, denominator = 4;
};

struct MidiKeySignature {  // FF 59
  int64_t tick = 0;
  double seconds = 0;
  int sharps = 0;  // -7 (7 flats) .. 7 (7 sharps)
  bool minor = false;
  std::string name() const;  // "D minor", "B flat major", "F sharp minor"
};

struct MidiProgramChange {  // Cn
  int64_t tick = 0;
  double seconds = 0;
  int channel = 0, program = 0;  // program 0..127 (General MIDI numbering minus 1)
};

struct MidiNote {             // a note on (velocity > 0) paired with its note off
  double start = 0, end = 0;  // seconds
  int channel = 0, pitch = 0, velocity = 0;
  int program = 0;  // the channel's program at the note's start (0 before any program change)
  int track = 0;
};

struct MidiFile {
  std::string name;                      // the path or name the file was read under
  int format = 0;                        // 0 or 1
  int division = 0;                      // ticks per quarter note (> 0) or, when negative, the SMPTE header word
  std::vector<std::string> track_names;  // one per track (FF 03), empty when it has none
  std::vector<MidiTempo> tempos;         // sorted by tick; the first is at tick 0 (120 BPM when the file sets none)
  std::vector<MidiTimeSignature> time_signatures;  // sorted by tick
  std::vector<MidiKeySignature> key_signatures;    // sorted by tick (one per tick: the last one written)
  std::vector<MidiProgramChange> programs;         // sorted by tick
  std::vector<MidiNote> notes;                     // sorted by start, then channel and pitch
  double duration = 0;                             // seconds to the last event of any track (end of track included)

  // Seconds at a tick, and the tick (fractional) at a time, through the tempo map.
  double seconds_at(double tick) const;
  double tick_at(double seconds) const;
};

// Parses the bytes of a file; errors name `name` and the offset.
MidiFile parse_midi(const void* bytes, size_t size, const std::string& name);
MidiFile read_midi(const std::string& path);  // errors name the path

// ---- Captions -------------------------------------------------------------
//
// Template (parts in brackets are left out when unknown):
//   "a {tempo} piece at {bpm} BPM[ in {key}][ played by {instruments}]"
// - bpm: quarter notes per minute over the clip (MIDI's beat is the quarter
//   note whatever the time signature): quarters elapsed in [t0, t1) divided
//   by its minutes, rounded to an integer, so a tempo change inside the clip
//   counts for the time it lasts.
// - tempo: the nearest of the captioned-melodies words (slow 80, moderate
//   100, fast 120, very fast 140 BPM; ../shared/specs/captioned-melodies.md),
//   so the two corpora share a vocabulary: below 90 "slow", [90, 110)
//   "moderate", [110, 130) "fast", 130 and above "very fast".
// - key: that of the key-signature span covering most of the clip (a span
//   runs from one FF 59 to the next, the first from time 0; a file without
//   any is one span). A span's key is its signature unless the notes
//   sounding in it contradict it, else the Krumhansl-Schmuckler estimate over
//   those notes (pitch classes weighted by sounding time, correlated with the
//   Krumhansl-Kessler major and minor profiles in all 12 transpositions),
//   said only when its correlation reaches kMidiKeyMinCorrelation; otherwise
//   nothing is said. A signature is contradicted when its own correlation
//   falls more than kMidiKeySignatureTolerance below the best key's:
//   sequencers write "C major" (FF 59 00 00) by default, and 15 of the 42
//   MIDI files with signatures in Debian's simutrans-data and openttd-openmsx
//   carry one that their notes do not bear out.
// - instruments: the words of midi_instrument_word() for the programs of the
//   notes that sound in [t0, t1) (and "drums" for channel 10), most sounding
//   time first (note-seconds inside the clip), at most kMidiCaptionInstruments
//   of them, joined as "a", "a and b", "a, b and c".
constexpr double kMidiKeyMinCorrelation = 0.6;
constexpr double kMidiKeySignatureTolerance = 0.1;
constexpr size_t kMidiCaptionInstruments = 4;

struct MidiClipCaption {
  std::string text;                      // the caption
  double bpm = 0;                        // unrounded
  std::string tempo;                     // slow | moderate | fast | very fast
  std::string key;                       // "D minor", or empty
  std::string key_source;                // "signature", "estimate", or empty
  std::string key_signature;             // the span's FF 59 (even when contradicted), or empty
  std::vector<std::string> instruments;  // every word that sounds in the clip, most sounding time first
  std::vector<int> programs;             // the programs (0..127) of pitched notes sounding in the clip, ascending
  bool drums = false;                    // channel 10 sounds in the clip
  int64_t notes = 0;                     // notes sounding in the clip
};

MidiClipCaption midi_caption(const MidiFile& midi, double t0, double t1);

// The tempo word of a BPM (thresholds above).
std::string midi_tempo_word(double bpm);
// The caption word of a General MIDI program 0..127: its family (GM level 1's
// sixteen groups of eight), except that the Ensemble group is split into
// "strings" (48-51, joining the Strings group), "choir" (52-54) and
// "orchestra hits" (55):
//   0 piano, 8 mallet percussion, 16 organ, 24 guitar, 32 bass, 40 strings,
//   56 brass, 64 reeds, 72 flutes, 80 synth lead, 88 synth pad,
//   96 synth effects, 104 folk instruments, 112 percussion, 120 sound effects.
std::string midi_instrument_word(int program);
// The Krumhansl-Schmuckler key of the notes' sounding time inside [t0, t1)
// (drums left out): the best of the 24 keys, its correlation, and the
// correlation of a given signature's key; an empty name when no pitched note
// sounds there.
struct MidiKeyEstimate {
  std::string name;
  double correlation = 0;
  double signature_correlation = 0;  // of `signature`'s key, when one was given
};
MidiKeyEstimate estimate_midi_key(const std::vector<MidiNote>& notes, double t0 = 0, double t1 = 1e300,
                                  const MidiKeySignature* signature = nullptr);

}  // namespace fm::data

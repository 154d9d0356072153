// Standard MIDI Files (fm/data/midi.h): files written here byte by byte
// (format 0 and 1, running status, tempo changes, key and time signatures,
// program changes across tracks, a drum channel, SMPTE time) read back into
// the expected notes and times; bad files (not MIDI, truncated, wrong chunk
// sizes, every prefix and random byte changes of a good file) give one
// fm::Error naming the file and the offset; the captions' rules; Debian's
// MIDI files when installed; and `fm prepare midi` end to end when the
// fluidsynth program and a General MIDI soundfont are installed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "fm/data/midi.h"
#include "fm/error.h"
#include "fm_cli.h"
#include "helpers.h"

using namespace fm::data;
using fm::test::fm_binary;
using fm::test::FmRun;
using fm::test::run_fm;
using fm::test::slurp;
using fm::test::expect_error;
namespace fs = std::filesystem;

namespace {

// ---- A Standard MIDI File writer, byte by byte ----------------------------

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int v : b) s += char(uint8_t(v));
  return s;
}
std::string be32(uint32_t v) { return bytes({int(v >> 24), int(v >> 16 & 0xff), int(v >> 8 & 0xff), int(v & 0xff)}); }
std::string be16(uint16_t v) { return bytes({v >> 8, v & 0xff}); }
std::string varlen(uint32_t v) {
  std::string s(1, char(v & 0x7f));
  while (v >>= 7) s.insert(s.begin(), char(0x80 | (v & 0x7f)));
  return s;
}

// Events with delta times; `raw` writes the bytes after the delta as given,
// so running status is written by leaving the status byte out.
struct Track {
  std::string b;
  Track& raw(uint32_t delta, const std::string& event) {
    b += varlen(delta) + event;
    return *this;
  }
  Track& meta(uint32_t delta, int type, const std::string& data) {
    return raw(delta, bytes({0xff, type}) + varlen(uint32_t(data.size())) + data);
  }
  Track& tempo(uint32_t delta, uint32_t us) {
    return meta(delta, 0x51, bytes({int(us >> 16), int(us >> 8 & 0xff), int(us & 0xff)}));
  }
  Track& key(uint32_t delta, int sharps, int minor) { return meta(delta, 0x59, bytes({sharps & 0xff, minor})); }
  Track& time_signature(uint32_t delta, int num, int den_log2) {
    return meta(delta, 0x58, bytes({num, den_log2, 24, 8}));
  }
  Track& name(const std::string& n) { return meta(0, 0x03, n); }
  Track& program(uint32_t delta, int channel, int program) { return raw(delta, bytes({0xc0 | channel, program})); }
  Track& on(uint32_t delta, int channel, int pitch, int velocity = 100) {
    return raw(delta, bytes({0x90 | channel, pitch, velocity}));
  }
  Track& off(uint32_t delta, int channel, int pitch) { return raw(delta, bytes({0x80 | channel, pitch, 64})); }
  Track& end(uint32_t delta = 0) { return meta(delta, 0x2f, ""); }
};

std::string chunk(const std::string& type, const std::string& body) {
  return type + be32(uint32_t(body.size())) + body;
}

std::string smf(int format, int division, const std::vector<Track>& tracks) {
  std::string s = chunk("MThd", be16(uint16_t(format)) + be16(uint16_t(tracks.size())) + be16(uint16_t(division)));
  for (const Track& t : tracks) s += chunk("MTrk", t.b);
  return s;
}

MidiFile parse(const std::string& b, const std::string& name = "test.mid") {
  return parse_midi(b.data(), b.size(), name);
}

// Format 0, 480 ticks per quarter at 120 BPM (a tick is 1/960 s), notes
// written with running status and ended both by note off and by note on
// with velocity 0.
std::string format0_file() {
  Track t;
  t.tempo(0, 500000).program(0, 0, 0);
  t.raw(0, bytes({0x90, 60, 100}));   // note on 60
  t.raw(480, bytes({60, 0}));         // running status: note on 60 velocity 0 = note off (0.5 s)
  t.raw(0, bytes({62, 100}));         // running status: note on 62
  t.raw(480, bytes({0x80, 62, 64}));  // note off 62 (1.0 s)
  t.raw(0, bytes({0x90, 64, 80}));
  t.raw(480, bytes({64, 0}));  // 1.5 s
  t.end(480);                  // 2.0 s
  return smf(0, 480, {t});
}

// Format 1, 96 ticks per quarter: 120 BPM, then 60 BPM from tick 192 (1.0 s),
// so tick t is t/192 s up to 192 and 1 + (t - 192)/96 s after. D minor, then
// F sharp major from tick 384 (3.0 s). Strings (program 40) on channel 0,
// drums on channel 10, and channel 1's trumpet (56) set in another track at
// the tick of its note.
std::string format1_file() {
  Track conductor, strings, drums, brass;
  conductor.name("conductor").time_signature(0, 3, 2).key(0, -1, 1).tempo(0, 500000);
  conductor.tempo(192, 1000000).key(192, 6, 0).end(96);  // ends at tick 480: 4.0 s
  strings.name("violin").program(0, 0, 40);
  strings.on(0, 0, 62).off(96, 0, 62);                   // D: 0 - 0.5 s
  strings.on(0, 0, 65).on(96, 1, 67).off(0, 0, 65 + 0);  // F: 0.5 - 1.0 s; G on channel 1 at 1.0 s
  strings.off(48, 1, 67);                                // 1.5 s
  strings.on(48, 0, 69).off(96, 0, 69).end();            // A: 2.0 - 3.0 s
  drums.on(0, 9, 36).off(48, 9, 36).on(48, 9, 38).off(48, 9, 38).end();
  brass.program(192, 1, 56).end();
  return smf(1, 96, {conductor, strings, drums, brass});
}

}  // namespace

TEST(Midi, Format0RunningStatus) {
  const MidiFile m = parse(format0_file());
  EXPECT_EQ(m.format, 0);
  EXPECT_EQ(m.division, 480);
  ASSERT_EQ(m.notes.size(), 3u);
  const double start[] = {0, 0.5, 1.0}, end[] = {0.5, 1.0, 1.5};
  const int pitch[] = {60, 62, 64}, velocity[] = {100, 100, 80};
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_DOUBLE_EQ(m.notes[i].start, start[i]);
    EXPECT_DOUBLE_EQ(m.notes[i].end, end[i]);
    EXPECT_EQ(m.notes[i].pitch, pitch[i]);
    EXPECT_EQ(m.notes[i].velocity, velocity[i]);
    EXPECT_EQ(m.notes[i].channel, 0);
    EXPECT_EQ(m.notes[i].program, 0);
  }
  EXPECT_DOUBLE_EQ(m.duration, 2.0);
  ASSERT_EQ(m.tempos.size(), 1u);
  EXPECT_DOUBLE_EQ(m.tempos[0].bpm(), 120);
  EXPECT_TRUE(m.key_signatures.empty());
}

TEST(Midi, Format1TempoMapSignaturesProgramsAndDrums) {
  const MidiFile m = parse(format1_file());
  EXPECT_EQ(m.format, 1);
  EXPECT_EQ(m.track_names, (std::vector<std::string>{"conductor", "violin", "", ""}));
  ASSERT_EQ(m.tempos.size(), 2u);
  EXPECT_EQ(m.tempos[1].tick, 192);
  EXPECT_DOUBLE_EQ(m.tempos[1].seconds, 1.0);
  EXPECT_DOUBLE_EQ(m.tempos[1].bpm(), 60);
  ASSERT_EQ(m.time_signatures.size(), 1u);
  EXPECT_EQ(m.time_signatures[0].numerator, 3);
  EXPECT_EQ(m.time_signatures[0].denominator, 4);
  ASSERT_EQ(m.key_signatures.size(), 2u);
  EXPECT_EQ(m.key_signatures[0].name(), "D minor");
  EXPECT_EQ(m.key_signatures[1].name(), "F sharp major");
  EXPECT_DOUBLE_EQ(m.key_signatures[1].seconds, 3.0);
  ASSERT_EQ(m.programs.size(), 2u);
  EXPECT_DOUBLE_EQ(m.duration, 4.0);

  struct Want {
    double start, end;
    int channel, pitch, program;
  };
  // Sorted by start, then channel and pitch.
  const std::vector<Want> want{{0, 0.5, 0, 62, 40},   {0, 0.25, 9, 36, 0},   {0.5, 1.0, 0, 65, 40},
                               {0.5, 0.75, 9, 38, 0}, {1.0, 1.5, 1, 67, 56}, {2.0, 3.0, 0, 69, 40}};
  ASSERT_EQ(m.notes.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_DOUBLE_EQ(m.notes[i].start, want[i].start);
    EXPECT_DOUBLE_EQ(m.notes[i].end, want[i].end);
    EXPECT_EQ(m.notes[i].channel, want[i].channel);
    EXPECT_EQ(m.notes[i].pitch, want[i].pitch);
    EXPECT_EQ(m.notes[i].program, want[i].program);  // channel 1's program change sits in another track, same tick
  }
  EXPECT_EQ(m.notes[2].track, 1);
  EXPECT_EQ(m.notes[1].track, 2);
  for (double s : {0.0, 0.3, 1.0, 1.7, 3.5}) EXPECT_NEAR(m.seconds_at(m.tick_at(s)), s, 1e-12);
  EXPECT_DOUBLE_EQ(m.tick_at(2.0), 288);
}

TEST(Midi, RepeatedAndOverlappingNotesAndNotesLeftOn) {
  Track t;
  t.on(0, 2, 60).off(96, 2, 60).on(0, 2, 60).off(96, 2, 60);   // repeated note: off and on at one tick
  t.on(0, 2, 64).on(48, 2, 64).off(48, 2, 64).off(48, 2, 64);  // overlapping: first on, first off
  t.on(0, 2, 67).end(96);                                      // never switched off
  const MidiFile m = parse(smf(0, 96, {t}));
  ASSERT_EQ(m.notes.size(), 5u);
  EXPECT_DOUBLE_EQ(m.notes[0].end, 0.5);
  EXPECT_DOUBLE_EQ(m.notes[1].start, 0.5);
  EXPECT_DOUBLE_EQ(m.notes[1].end, 1.0);
  EXPECT_DOUBLE_EQ(m.notes[2].start, 1.0);
  EXPECT_DOUBLE_EQ(m.notes[2].end, 1.5);
  EXPECT_DOUBLE_EQ(m.notes[3].start, 1.25);
  EXPECT_DOUBLE_EQ(m.notes[3].end, 1.75);
  EXPECT_EQ(m.notes[4].pitch, 67);
  EXPECT_DOUBLE_EQ(m.notes[4].end, 2.25);  // the end of the track
}

TEST(Midi, SmpteDivisionIgnoresTheTempo) {
  Track t;
  t.tempo(0, 250000).on(1500, 0, 60).off(500, 0, 60).end();
  const MidiFile m = parse(smf(0, 0xe728, {t}));  // -25 fps x 40 ticks per frame: 1000 ticks per second
  ASSERT_EQ(m.notes.size(), 1u);
  EXPECT_DOUBLE_EQ(m.notes[0].start, 1.5);
  EXPECT_DOUBLE_EQ(m.notes[0].end, 2.0);
}

TEST(Midi, SkipsUnknownChunksSysExAndWhatFollowsTheEndOfTrack) {
  Track t;
  t.raw(0, bytes({0xf0, 3, 0x7e, 0x7f, 0xf7})).raw(0, bytes({0xb0, 7, 100}));  // SysEx, a controller
  t.on(0, 0, 60).off(96, 0, 60).end();
  t.b += bytes({0x00, 0x90, 61, 100});  // after FF 2F: ignored
  const std::string file = chunk("MThd", be16(0) + be16(1) + be16(96)) + chunk("XYZW", "anything") + chunk("MTrk", t.b);
  const MidiFile m = parse(file);
  ASSERT_EQ(m.notes.size(), 1u);
  EXPECT_EQ(m.notes[0].pitch, 60);
}

TEST(Midi, KeySignatureNames) {
  const std::vector<std::pair<std::pair<int, bool>, std::string>> cases{
      {{0, false}, "C major"},       {{0, true}, "A minor"},       {{-1, true}, "D minor"},
      {{2, false}, "D major"},       {{-3, true}, "C minor"},      {{6, false}, "F sharp major"},
      {{-6, false}, "G flat major"}, {{7, true}, "A sharp minor"}, {{-7, false}, "C flat major"}};
  for (const auto& [k, name] : cases) EXPECT_EQ((MidiKeySignature{0, 0, k.first, k.second}.name()), name);
}

TEST(Midi, OutOfRangeKeySignaturesAreLeftOut) {
  Track t;
  t.meta(0, 0x59, bytes({0xff, 0xff})).key(0, 9, 0).on(0, 0, 60).off(96, 0, 60).end();  // as simutrans-data has
  const MidiFile m = parse(smf(0, 96, {t}));
  EXPECT_TRUE(m.key_signatures.empty());
  EXPECT_EQ(m.notes.size(), 1u);
}

TEST(Midi, BadFilesNameTheFileAndTheOffset) {
  const std::string good = format1_file();
  auto fails = [](const std::string& b, const std::string& part) {
    SCOPED_TRACE(part);
    expect_error([&] { parse(b, "bad.mid"); }, "bad.mid: offset ");
    expect_error([&] { parse(b, "bad.mid"); }, part);
  };
  fails("", "not a MIDI file");
  fails("RIFF....WAVEfmt not midi at all", "not a MIDI file");
  fails("MThd" + be32(6) + be16(1), "truncated MThd");
  fails("MThd" + be32(2) + be16(1) + be16(1) + be16(96), "MThd chunk of 2 bytes");
  fails(good.substr(0, good.size() - 5), "claims");                      // truncated in the last track
  fails(good.substr(0, 14 + 8 + 10), "offset 14: chunk 'MTrk' claims");  // truncated in the first track
  fails(good.substr(0, 14), "announces 4 tracks; the file ends after 0");
  std::string longer = good;
  longer.replace(18, 4, be32(0x7fffffff));  // the first track's length
  fails(longer, "chunk 'MTrk' claims 2147483647 bytes");
  Track t;
  t.on(0, 0, 60).off(96, 0, 60).end();
  std::string shorter = smf(0, 96, {t});
  shorter.replace(18, 4, be32(uint32_t(t.b.size() - 5)));  // cuts the note off in two
  fails(shorter, "runs past the end of its chunk");
  std::string fmt2 = good;
  fmt2[9] = 2;
  fails(fmt2, "offset 8: format 2");
  std::string zero_div = good;
  zero_div[12] = 0, zero_div[13] = 0;
  fails(zero_div, "offset 12: division of 0");
  std::string fmt0_many = good;
  fmt0_many[9] = 0;
  fails(fmt0_many, "format 0 with 4 tracks");
  fails(smf(0, 96, {Track().raw(0, bytes({60, 100}))}), "offset 23: track 0: data byte 0x3c without a status byte");
  fails(smf(0, 96, {Track().raw(0, bytes({0x90, 0x80, 100}))}), "has its top bit set");
  fails(smf(0, 96, {Track().raw(0, bytes({0xf4}))}), "status byte 0xf4");
  fails(smf(0, 96, {Track().meta(0, 0x51, bytes({7, 0xa1}))}), "set tempo (FF 51) has 2 data bytes, expected 3");
  fails(smf(0, 96, {Track().tempo(0, 0)}), "0 microseconds");
  Track long_delta;
  long_delta.b = bytes({0x81, 0x81, 0x81, 0x81, 0x01, 0x90, 60, 100});
  fails(smf(0, 96, {long_delta}), "delta time is longer than 4 bytes");
}

// Every prefix of a good file, and random changes of its bytes: either read
// or one fm::Error naming the file, never a crash or another exception.
TEST(Midi, EveryPrefixAndRandomCorruptionsFailCleanly) {
  const std::string good = format1_file();
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      parse(good.substr(0, n), "cut.mid");
      ADD_FAILURE() << "a prefix of " << n << " of " << good.size() << " bytes was read";
    } catch (const fm::Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("cut.mid: offset ", 0), 0u) << e.what();
    }
  }
  std::mt19937 rng(7);
  int errors = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string b = good;
    for (int k = 0; k < 1 + trial % 4; ++k) b[rng() % b.size()] = char(rng() & 0xff);
    try {
      const MidiFile m = parse(b, "noise.mid");
      for (const MidiNote& n : m.notes) ASSERT_LE(n.start, n.end);
    } catch (const fm::Error& e) {
      ++errors;
      ASSERT_EQ(std::string(e.what()).rfind("noise.mid: offset ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(errors, 100);
}

TEST(Midi, ReadMidiNamesThePath) {
  const fs::path dir = fs::temp_directory_path() / ("fm_test_midi_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fm::test::write_file((dir / "good.mid").string(), format0_file());
  fm::test::write_file((dir / "bad.mid").string(), "hello");
  EXPECT_EQ(read_midi((dir / "good.mid").string()).notes.size(), 3u);
  expect_error([&] { read_midi((dir / "bad.mid").string()); },
               (dir / "bad.mid").string() + ": offset 0: not a MIDI file");
  expect_error([&] { read_midi((dir / "missing.mid").string()); }, (dir / "missing.mid").string() + ": cannot open");
  fs::remove_all(dir);
}

// ---- Captions --------------------------------------------------------------

TEST(MidiCaption, TempoWordsAndInstrumentWords) {
  EXPECT_EQ(midi_tempo_word(40), "slow");
  EXPECT_EQ(midi_tempo_word(89.9), "slow");
  EXPECT_EQ(midi_tempo_word(90), "moderate");
  EXPECT_EQ(midi_tempo_word(109.9), "moderate");
  EXPECT_EQ(midi_tempo_word(110), "fast");
  EXPECT_EQ(midi_tempo_word(129.9), "fast");
  EXPECT_EQ(midi_tempo_word(130), "very fast");
  // The captioned-melodies tempos keep their words.
  EXPECT_EQ(midi_tempo_word(80), "slow");
  EXPECT_EQ(midi_tempo_word(100), "moderate");
  EXPECT_EQ(midi_tempo_word(120), "fast");
  EXPECT_EQ(midi_tempo_word(140), "very fast");
  const std::vector<std::pair<int, std::string>> words{{0, "piano"},
                                                       {7, "piano"},
                                                       {8, "mallet percussion"},
                                                       {16, "organ"},
                                                       {24, "guitar"},
                                                       {32, "bass"},
                                                       {40, "strings"},
                                                       {47, "strings"},
                                                       {48, "strings"},
                                                       {51, "strings"},
                                                       {52, "choir"},
                                                       {54, "choir"},
                                                       {55, "orchestra hits"},
                                                       {56, "brass"},
                                                       {64, "reeds"},
                                                       {72, "flutes"},
                                                       {80, "synth lead"},
                                                       {88, "synth pad"},
                                                       {96, "synth effects"},
                                                       {104, "folk instruments"},
                                                       {112, "percussion"},
                                                       {127, "sound effects"}};
  for (const auto& [p, w] : words) EXPECT_EQ(midi_instrument_word(p), w) << p;
  expect_error([] { midi_instrument_word(128); }, "outside 0..127");
  expect_error([] { midi_instrument_word(-1); }, "outside 0..127");
}

TEST(MidiCaption, FromTheFormat1File) {
  const MidiFile m = parse(format1_file());
  // [0, 2): 1 s at 120 and 1 s at 60 BPM; D minor; strings 1.0 s of notes,
  // brass and drums 0.5 s each (ties in name order).
  const MidiClipCaption a = midi_caption(m, 0, 2);
  EXPECT_DOUBLE_EQ(a.bpm, 90);
  EXPECT_EQ(a.key, "D minor");
  EXPECT_EQ(a.key_source, "signature");
  EXPECT_EQ(a.instruments, (std::vector<std::string>{"strings", "brass", "drums"}));
  EXPECT_EQ(a.programs, (std::vector<int>{40, 56}));
  EXPECT_TRUE(a.drums);
  EXPECT_EQ(a.notes, 5);
  EXPECT_EQ(a.text, "a moderate piece at 90 BPM in D minor played by strings, brass and drums");
  // [3, 4): 60 BPM, F sharp major (no note to contradict it), nothing sounds.
  const MidiClipCaption b = midi_caption(m, 3, 4);
  EXPECT_EQ(b.text, "a slow piece at 60 BPM in F sharp major");
  EXPECT_FALSE(b.drums);
  // [0.6, 1.2): 0.4 s at 120 and 0.2 s at 60 BPM; notes cut by the clip's
  // edges count for their time inside it: strings 0.4 s, brass 0.2, drums 0.15.
  EXPECT_EQ(midi_caption(m, 0.6, 1.2).text,
            "a moderate piece at 100 BPM in D minor played by strings, brass and drums");
  expect_error([&] { midi_caption(m, 2, 2); }, "test.mid: midi_caption: empty clip");
}

TEST(MidiCaption, KeyEstimatesAndContradictedSignatures) {
  // A C major tune without a signature: estimated.
  Track c;
  c.program(0, 0, 0);
  for (int rep = 0; rep < 4; ++rep)
    for (int p : {60, 64, 67, 72, 62, 65, 69, 71, 60, 64, 67, 60})
      c.on(0, 0, p).off(p == 60 || p == 67 ? 96 : 48, 0, p);
  c.end();
  const MidiFile cm = parse(smf(0, 96, {c}));
  const MidiKeyEstimate est = estimate_midi_key(cm.notes);
  EXPECT_EQ(est.name, "C major");
  EXPECT_GE(est.correlation, kMidiKeyMinCorrelation);
  const MidiClipCaption cc = midi_caption(cm, 0, 2);
  EXPECT_EQ(cc.key, "C major");
  EXPECT_EQ(cc.key_source, "estimate");
  EXPECT_EQ(cc.key_signature, "");
  EXPECT_EQ(cc.text, "a fast piece at 120 BPM in C major played by piano");

  // The same notes a tone up (D major) under a default "C major" signature: the estimate wins.
  Track d;
  d.key(0, 0, 0).program(0, 0, 24);
  for (int rep = 0; rep < 4; ++rep)
    for (int p : {62, 66, 69, 74, 64, 67, 71, 73, 62, 66, 69, 62})
      d.on(0, 0, p).off(p == 62 || p == 69 ? 96 : 48, 0, p);
  d.end();
  const MidiClipCaption dc = midi_caption(parse(smf(0, 96, {d})), 0, 2);
  EXPECT_EQ(dc.key, "D major");
  EXPECT_EQ(dc.key_source, "estimate");
  EXPECT_EQ(dc.key_signature, "C major");
  EXPECT_EQ(dc.text, "a fast piece at 120 BPM in D major played by guitar");

  // All twelve pitch classes alike: no key is said.
  Track x;
  for (int p = 60; p < 72; ++p) x.on(0, 0, p).off(96, 0, p);
  x.end();
  const MidiClipCaption xc = midi_caption(parse(smf(0, 96, {x})), 0, 6);
  EXPECT_EQ(xc.key, "");
  EXPECT_EQ(xc.text, "a fast piece at 120 BPM played by piano");
}

TEST(MidiCaption, AtMostFourInstrumentsByTimeAndDrumsAlone) {
  Track t;
  const int programs[] = {0, 24, 32, 40, 56, 73};  // piano, guitar, bass, strings, brass, flutes
  for (int ch = 0; ch < 6; ++ch) t.program(0, ch, programs[ch]);
  for (int ch = 0; ch < 6; ++ch) t.on(0, ch, 60 + ch);
  for (int ch = 5; ch >= 0; --ch) t.off(96, ch, 60 + ch);  // flutes sound 0.5 s, piano 3 s
  t.on(0, 9, 42).off(10, 9, 42).end();
  const MidiClipCaption c = midi_caption(parse(smf(0, 96, {t})), 0, 4);
  EXPECT_EQ(c.instruments,
            (std::vector<std::string>{"piano", "guitar", "bass", "strings", "brass", "flutes", "drums"}));
  EXPECT_NE(c.text.find("played by piano, guitar, bass and strings"), std::string::npos) << c.text;
  EXPECT_EQ(c.text.find("brass"), std::string::npos) << c.text;
  const MidiClipCaption drums = midi_caption(parse(smf(0, 96, {t})), 3.0, 3.5);
  EXPECT_EQ(drums.instruments, (std::vector<std::string>{"drums"}));
  EXPECT_TRUE(drums.programs.empty());
  EXPECT_EQ(drums.text.substr(drums.text.size() - 15), "played by drums");
}

// Debian's MIDI files, when installed (tools/prepare-data installs them for
// data/midi/...): every one reads, with notes and a caption.
TEST(Midi, DebianFilesRead) {
  std::vector<fs::path> files;
  for (const char* dir : {"/usr/share/games/openttd/baseset/openmsx", "/usr/share/games/simutrans/music"})
    if (fs::is_directory(dir))
      for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.path().extension() == ".mid") files.push_back(e.path());
  if (files.empty()) GTEST_SKIP() << "Debian's openttd-openmsx and simutrans-data are not installed";
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    const MidiFile m = read_midi(f.string());
    EXPECT_GT(m.notes.size(), 100u);
    EXPECT_GT(m.duration, 30);
    const MidiClipCaption c = midi_caption(m, 10, 20);
    EXPECT_EQ(c.text.rfind("a ", 0), 0u);
    EXPECT_FALSE(c.instruments.empty());
  }
}

// ---- fm prepare midi, end to end -------------------------------------------

namespace {

std::string find_soundfont() {
  for (const char* p : {"/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2",
                        "/usr/share/sounds/sf2/default-GM.sf2"})
    if (fs::exists(p)) return p;
  return "";
}

// (channels, rate, frames, RMS) of a 16-bit PCM WAV.
struct Wav {
  int channels = 0, rate = 0, bits = 0;
  size_t frames = 0;
  double rms = 0;
};
Wav read_wav(const fs::path& path) {
  const std::string b = slurp(path);
  const auto u32 = [&](size_t at) {
    return uint32_t(uint8_t(b[at])) | uint32_t(uint8_t(b[at + 1])) << 8 | uint32_t(uint8_t(b[at + 2])) << 16 |
           uint32_t(uint8_t(b[at + 3])) << 24;
  };
  const auto u16 = [&](size_t at) { return uint16_t(uint8_t(b[at]) | uint8_t(b[at + 1]) << 8); };
  Wav w;
  if (b.size() < 12 || b.compare(0, 4, "RIFF") != 0 || b.compare(8, 4, "WAVE") != 0) return w;
  for (size_t at = 12; at + 8 <= b.size(); at += 8 + ((u32(at + 4) + 1) & ~1u)) {
    const std::string id = b.substr(at, 4);
    const size_t size = u32(at + 4);
    if (id == "fmt ") w.channels = u16(at + 10), w.rate = int(u32(at + 12)), w.bits = u16(at + 22);
    if (id == "data" && w.bits == 16 && w.channels == 1 && at + 8 + size <= b.size()) {
      w.frames = size / 2;
      double sum = 0;
      for (size_t i = 0; i < w.frames; ++i) sum += std::pow(int16_t(u16(at + 8 + 2 * i)) / 32768.0, 2);
      w.rms = std::sqrt(sum / double(std::max<size_t>(1, w.frames)));
    }
  }
  return w;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// 120 BPM piano arpeggios (C E G) for `notes_seconds`, the track ending at `end_seconds`.
std::string piano_file(double notes_seconds, double end_seconds) {
  Track t;
  t.tempo(0, 500000).program(0, 0, 0);
  const int arpeggio[] = {60, 64, 67};
  uint32_t tick = 0;
  for (int i = 0; tick + 240 <= uint32_t(notes_seconds * 960); ++i, tick += 240)
    t.on(0, 0, arpeggio[i % 3]).off(240, 0, arpeggio[i % 3]);
  t.end(uint32_t(end_seconds * 960) - tick);
  return smf(0, 480, {t});
}

}  // namespace

TEST(MidiPrepare, RendersCutsAndCaptions) {
  if (!fs::exists(fm_binary())) GTEST_SKIP() << fm_binary() << " is not built";
  if (std::system("command -v fluidsynth > /dev/null 2>&1") != 0) GTEST_SKIP() << "fluidsynth is not installed";
  const std::string sf = find_soundfont();
  if (sf.empty()) GTEST_SKIP() << "no General MIDI soundfont in /usr/share/sounds/sf2 (e.g. timgm6mb-soundfont)";
  const fs::path dir = fs::temp_directory_path() / ("fm_test_midi_prepare_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "in");
  if (run_fm("prepare midi --help", dir).code != 0) GTEST_SKIP() << "this fm was built without LIBFM_MEDIA";
  // a.mid: 25 s of notes in a 42 s track: clips 0-2 sound, clip 3 (30-40 s) is silent.
  fm::test::write_file((dir / "in/a.mid").string(), piano_file(25, 42));
  // b.mid: 150 BPM, D minor, strings and drums for 10.5 s: one clip.
  Track conductor, strings, drums;
  conductor.tempo(0, 400000).key(0, -1, 1).end();
  strings.program(0, 0, 48);
  for (int i = 0; i < 7; ++i)
    strings.on(0, 0, 62).on(0, 0, 65).on(0, 0, 69).off(360, 0, 62).off(0, 0, 65).off(0, 0, 69);
  strings.end();
  for (int i = 0; i < 52; ++i) drums.on(i == 0 ? 0 : 36, 9, 36).off(12, 9, 36);
  drums.end();
  fm::test::write_file((dir / "in/b.mid").string(), smf(1, 96, {conductor, strings, drums}));
  fm::test::write_file((dir / "in/bad.mid").string(), "not a MIDI file");
  const std::string common = " --soundfont " + sf + " --sample-rate 16000";

  FmRun run = run_fm("prepare midi --from " + (dir / "in").string() + common + " --out " + (dir / "out").string(), dir);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("skipped " + (dir / "in/bad.mid").string() + ": offset 0: not a MIDI file"),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("2 of 3 MIDI files"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("4 clips of 10 s at 16000 Hz"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("1 silent clips skipped"), std::string::npos) << run.output;
  const std::vector<std::string> lines = lines_of(slurp(dir / "out/captions.jsonl"));
  ASSERT_EQ(lines.size(), 4u);
  const std::vector<std::string> files{"a_000.wav", "a_001.wav", "a_002.wav", "b_000.wav"};
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(lines[i]);
    EXPECT_NE(lines[i].find("\"file\":\"" + files[i] + "\""), std::string::npos);
    EXPECT_NE(lines[i].find("\"split\":\"train\""), std::string::npos);  // the tenth file would be val
    const Wav w = read_wav(dir / "out" / files[i]);
    EXPECT_EQ(w.channels, 1);
    EXPECT_EQ(w.rate, 16000);
    EXPECT_EQ(w.frames, 160000u);
    EXPECT_GT(w.rms, 0.01);
  }
  EXPECT_NE(lines[0].find("\"caption\":\"a fast piece at 120 BPM in C major played by piano\""), std::string::npos);
  EXPECT_NE(lines[2].find("\"start\":20.0"), std::string::npos);
  EXPECT_NE(lines[3].find("\"caption\":\"a very fast piece at 150 BPM in D minor played by strings and drums\""),
            std::string::npos);
  EXPECT_NE(lines[3].find("\"key_source\":\"signature\""), std::string::npos);
  EXPECT_NE(lines[3].find("\"programs\":[48]"), std::string::npos);
  EXPECT_NE(lines[3].find("\"drums\":true"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out.tmp"));

  // --max-clips-per-file: 2 of a.mid's 3, spread (clips 0 and 1 of 3).
  run = run_fm("prepare midi --from " + (dir / "in/a.mid").string() + common + " --max-clips-per-file 2 --out " +
                   (dir / "capped").string(),
               dir);
  ASSERT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("1 over --max-clips-per-file"), std::string::npos) << run.output;
  EXPECT_EQ(lines_of(slurp(dir / "capped/captions.jsonl")).size(), 2u);

  // The split: of ten files in path order, the tenth is val.
  fs::create_directories(dir / "ten");
  for (int i = 0; i < 10; ++i)
    fm::test::write_file((dir / "ten" / ("f" + std::to_string(i) + ".mid")).string(), piano_file(10.5, 10.5));
  run = run_fm(
      "prepare midi --split val --from " + (dir / "ten").string() + common + " --out " + (dir / "val").string(), dir);
  ASSERT_EQ(run.code, 0) << run.output;
  const std::vector<std::string> val = lines_of(slurp(dir / "val/captions.jsonl"));
  ASSERT_EQ(val.size(), 1u);
  EXPECT_NE(val[0].find("\"file\":\"f9_000.wav\""), std::string::npos) << val[0];

  // Bad inputs: one line naming the option or file.
  const std::vector<std::pair<std::string, std::string>> bad{
      {"--from " + (dir / "in").string() + " --soundfont " + (dir / "none.sf2").string() + " --out x", "cannot open"},
      {"--from " + (dir / "in").string() + " --soundfont " + (dir / "in/a.mid").string() + " --out x",
       "not a SoundFont"},
      {"--soundfont " + sf + " --out x", "--from is required"},
      {"--from " + (dir / "nowhere").string() + " --soundfont " + sf + " --out x", "no such file or folder"},
      {"--from " + (dir / "in").string() + common + " --split test --out x", "--split must be train, val or all"},
      {"--from " + (dir / "in/a.mid").string() + common + " --fluidsynth /nonexistent/fluidsynth --out " +
           (dir / "x").string(),
       "cannot run /nonexistent/fluidsynth"}};
  for (const auto& [args, want] : bad) {
    run = run_fm("prepare midi " + args, dir);
    EXPECT_NE(run.code, 0) << args;
    EXPECT_NE(run.output.find(want), std::string::npos) << args << "\n" << run.output;
  }
  fs::remove_all(dir);
}

// Standard MIDI File reader and clip captions (fm/data/midi.h). The format
// is small and fixed (SMF 1.0: two chunk types, a dozen event kinds), so it
// is read here rather than through a MIDI library.
#include "fm/data/midi.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>

#include "fm/error.h"

namespace fm::data {
namespace {

// Every tick-stamped thing a track holds that the MidiFile keeps, before the
// tracks are merged into one time line.
struct Event {
  enum Kind { tempo, time_signature, key_signature, program, note_off, note_on };
  int64_t tick = 0;
  int track = 0;
  int64_t order = 0;  // position in its track
  Kind kind = tempo;
  int channel = 0;
  int a = 0, b = 0;   // pitch and velocity, program, signature fields
  int64_t value = 0;  // tempo: microseconds per quarter note
};

class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size, const std::string& name) : d_(data), size_(size), name_(name) {}

  template <class... Parts>
  [[noreturn]] void fail(size_t offset, const Parts&... parts) const {
    error(name_, ": offset ", offset, ": ", parts...);
  }
  uint32_t u32(size_t at) const {
    return uint32_t(d_[at]) << 24 | uint32_t(d_[at + 1]) << 16 | uint32_t(d_[at + 2]) << 8 | d_[at + 3];
  }
  uint16_t u16(size_t at) const { return uint16_t(d_[at] << 8 | d_[at + 1]); }
  uint8_t operator[](size_t at) const { return d_[at]; }
  size_t size() const { return size_; }
  const uint8_t* data() const { return d_; }

 private:
  const uint8_t* d_;
  size_t size_;
  const std::string& name_;
};

// Reads one MTrk chunk's events [begin, end) into `out`; returns the track's
// last tick (its end of track).
int64_t read_track(const Bytes& f, size_t begin, size_t end, int track, std::vector<Event>& out, std::string& name) {
  size_t p = begin;
  int64_t tick = 0, order = 0;
  int status = -1;  // running status; meta and SysEx events leave it alone
  auto need = [&](size_t at, size_t n, const char* what) {
    if (at + n > end) f.fail(at, "track ", track, ": ", what, " runs past the end of its chunk");
  };
  auto varlen = [&](const char* what) {
    int64_t v = 0;
    for (int i = 0; i < 4; ++i) {
      need(p, 1, what);
      const uint8_t c = f[p++];
      v = v << 7 | (c & 0x7f);
      if (!(c & 0x80)) return v;
    }
    f.fail(p - 4, "track ", track, ": ", what, " is longer than 4 bytes");
  };
  auto data_byte = [&](size_t at) {
    need(at, 1, "event");
    if (f[at] & 0x80)
      f.fail(at, "track ", track, ": data byte 0x", std::hex, int(f[at]), std::dec, " has its top bit set");
    return int(f[at]);
  };
  while (p < end) {
    tick += varlen("delta time");
    need(p, 1, "event");
    const size_t at = p;
    int s = f[p];
    if (s & 0x80) {
      ++p;
    } else {
      if (status < 0) f.fail(at, "track ", track, ": data byte 0x", std::hex, s, std::dec, " without a status byte");
      s = status;
    }
    Event e;
    e.tick = tick, e.track = track, e.order = order++;
    if (s == 0xff) {
      need(p, 1, "meta event");
      const int type = f[p++];
      const int64_t len = varlen("meta event length");
      need(p, size_t(len), "meta event");
      const size_t m = p;
      p += size_t(len);
      auto expect_len = [&](int64_t n, const char* what) {
        if (len != n) f.fail(at, "track ", track, ": ", what, " has ", len, " data bytes, expected ", n);
      };
      if (type == 0x2f) return tick;  // end of track: anything after it in the chunk is ignored
      if (type == 0x03 && name.empty()) {
        name.assign(reinterpret_cast<const char*>(f.data() + m), size_t(len));
      } else if (type == 0x51) {
        expect_len(3, "set tempo (FF 51)");
        e.kind = Event::tempo;
        e.value = int64_t(f[m]) << 16 | int64_t(f[m + 1]) << 8 | f[m + 2];
        if (e.value == 0) f.fail(at, "track ", track, ": set tempo (FF 51) of 0 microseconds per quarter note");
        out.push_back(e);
      } else if (type == 0x58) {
        expect_len(4, "time signature (FF 58)");
        if (f[m + 1] > 6) f.fail(at, "track ", track, ": time signature (FF 58) with denominator 2^", int(f[m + 1]));
        e.kind = Event::time_signature;
        e.a = f[m], e.b = 1 << f[m + 1];
        out.push_back(e);
      } else if (type == 0x59) {
        expect_len(2, "key signature (FF 59)");
        const int sharps = int(int8_t(f[m]));
        if (sharps < -7 || sharps > 7 || f[m + 1] > 1) continue;  // out of range: says nothing usable
        e.kind = Event::key_signature;
        e.a = sharps, e.b = f[m + 1];
        out.push_back(e);
      }
      continue;
    }
    if (s == 0xf0 || s == 0xf7) {  // SysEx, or an escape: skipped
      const int64_t len = varlen("SysEx length");
      need(p, size_t(len), "SysEx event");
      p += size_t(len);
      continue;
    }
    if (s >= 0xf0) f.fail(at, "track ", track, ": status byte 0x", std::hex, s, std::dec, " is not allowed in a file");
    status = s;
    const int kind = s & 0xf0;
    e.channel = s & 0x0f;
    const int n = (kind == 0xc0 || kind == 0xd0) ? 1 : 2;
    const int d0 = data_byte(p), d1 = n == 2 ? data_byte(p + 1) : 0;
    p += size_t(n);
    if (kind == 0x80 || (kind == 0x90 && d1 == 0)) {
      e.kind = Event::note_off, e.a = d0;
      out.push_back(e);
    } else if (kind == 0x90) {
      e.kind = Event::note_on, e.a = d0, e.b = d1;
      out.push_back(e);
    } else if (kind == 0xc0) {
      e.kind = Event::program, e.a = d0;
      out.push_back(e);
    }
  }
  return tick;  // a track without FF 2F ends with its chunk
}

const std::array<const char*, 15> kMajorBySharps{"C flat", "G flat", "D flat", "A flat",  "E flat",
                                                 "B flat", "F",      "C",      "G",       "D",
                                                 "A",      "E",      "B",      "F sharp", "C sharp"};
const std::array<const char*, 15> kMinorBySharps{"A flat",  "E flat",  "B flat",  "F",       "C",
                                                 "G",       "D",       "A",       "E",       "B",
                                                 "F sharp", "C sharp", "G sharp", "D sharp", "A sharp"};
// Tonics of the estimated keys by pitch class, spelt as the key signature
// with the fewest accidentals spells them.
const std::array<const char*, 12> kMajorTonics{"C",       "D flat", "D",      "E flat", "E",      "F",
                                               "F sharp", "G",      "A flat", "A",      "B flat", "B"};
const std::array<const char*, 12> kMinorTonics{"C",       "C sharp", "D",       "E flat", "E",      "F",
                                               "F sharp", "G",       "G sharp", "A",      "B flat", "B"};
// Krumhansl and Kessler's (1982) probe-tone ratings, tonic first.
const std::array<double, 12> kMajorProfile{6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88};
const std::array<double, 12> kMinorProfile{6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17};

double overlap(double a0, double a1, double b0, double b1) {
  return std::max(0.0, std::min(a1, b1) - std::max(a0, b0));
}

std::string join_words(const std::vector<std::string>& w) {
  std::string s;
  for (size_t i = 0; i < w.size(); ++i) s += (i == 0 ? "" : i + 1 == w.size() ? " and " : ", ") + w[i];
  return s;
}

}  // namespace

std::string MidiKeySignature::name() const {
  return std::string(minor ? kMinorBySharps.at(size_t(sharps + 7)) : kMajorBySharps.at(size_t(sharps + 7))) +
         (minor ? " minor" : " major");
}

double MidiFile::seconds_at(double tick) const {
  if (division < 0) {  // SMPTE: frames per second x ticks per frame, whatever the tempo
    const int fps = -(division >> 8);
    return tick / ((fps == 29 ? 29.97 : double(fps)) * double(division & 0xff));
  }
  auto it = std::upper_bound(tempos.begin(), tempos.end(), tick,
                             [](double t, const MidiTempo& m) { return t < double(m.tick); });
  const MidiTempo& m = it == tempos.begin() ? tempos.front() : *std::prev(it);
  return m.seconds + (tick - double(m.tick)) * double(m.us_per_quarter) * 1e-6 / double(division);
}

double MidiFile::tick_at(double seconds) const {
  if (division < 0) {
    const int fps = -(division >> 8);
    return seconds * (fps == 29 ? 29.97 : double(fps)) * double(division & 0xff);
  }
  auto it = std::upper_bound(tempos.begin(), tempos.end(), seconds,
                             [](double s, const MidiTempo& m) { return s < m.seconds; });
  const MidiTempo& m = it == tempos.begin() ? tempos.front() : *std::prev(it);
  return double(m.tick) + (seconds - m.seconds) * double(division) / (double(m.us_per_quarter) * 1e-6);
}

MidiFile parse_midi(const void* bytes, size_t size, const std::string& name) {
  const Bytes f(static_cast<const uint8_t*>(bytes), size, name);
  if (size < 4 || std::memcmp(f.data(), "MThd", 4) != 0) f.fail(0, "not a MIDI file (no MThd chunk)");
  if (size < 14) f.fail(size, "truncated MThd chunk (the file has ", size, " bytes)");
  const uint32_t header_len = f.u32(4);
  if (header_len < 6) f.fail(4, "MThd chunk of ", header_len, " bytes, expected at least 6");
  if (uint64_t(header_len) + 8 > size) f.fail(4, "MThd chunk claims ", header_len, " bytes; the file has ", size);
  MidiFile midi;
  midi.name = name;
  midi.format = f.u16(8);
  const int tracks = f.u16(10);
  midi.division = int(int16_t(f.u16(12)));
  if (midi.format == 2) f.fail(8, "format 2 (independent sequences) is not supported");
  if (midi.format > 2) f.fail(8, "unknown format ", midi.format);
  if (tracks == 0) f.fail(10, "the header announces no tracks");
  if (midi.format == 0 && tracks != 1) f.fail(10, "format 0 with ", tracks, " tracks (it has exactly one)");
  if (midi.division == 0) f.fail(12, "division of 0 ticks per quarter note");
  if (midi.division < 0) {
    const int fps = -(midi.division >> 8);
    if ((fps != 24 && fps != 25 && fps != 29 && fps != 30) || (midi.division & 0xff) == 0)
      f.fail(12, "SMPTE division 0x", std::hex, uint16_t(midi.division), std::dec, " is not 24, 25, 29 or 30 fps");
  }

  std::vector<Event> events;
  int64_t last_tick = 0;
  size_t p = 8 + size_t(header_len);
  for (int t = 0; t < tracks;) {
    if (p + 8 > size) f.fail(p, "the header announces ", tracks, " tracks; the file ends after ", t);
    const uint32_t len = f.u32(p + 4);
    const std::string type(reinterpret_cast<const char*>(f.data() + p), 4);
    if (uint64_t(p) + 8 + len > size)
      f.fail(p, "chunk '", type, "' claims ", len, " bytes; the file has ", size - p - 8, " after its header");
    if (type == "MTrk") {
      std::string track_name;
      last_tick = std::max(last_tick, read_track(f, p + 8, p + 8 + len, t, events, track_name));
      midi.track_names.push_back(track_name);
      ++t;
    }
    p += 8 + size_t(len);
  }

  // One time line: by tick; at one tick, signatures and program changes
  // before notes, and the notes of a track in written order (a repeated note
  // writes its note off first).
  std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    const bool an = a.kind >= Event::note_off, bn = b.kind >= Event::note_off;
    if (a.tick != b.tick) return a.tick < b.tick;
    if (an != bn) return bn;
    if (a.track != b.track) return a.track < b.track;
    return a.order < b.order;
  });

  for (const Event& e : events) {  // the tempo map first: every time depends on it
    if (e.kind != Event::tempo) continue;
    if (!midi.tempos.empty() && midi.tempos.back().tick == e.tick) midi.tempos.pop_back();
    midi.tempos.push_back({e.tick, 0, e.value});
  }
  if (midi.tempos.empty() || midi.tempos.front().tick != 0) midi.tempos.insert(midi.tempos.begin(), MidiTempo{});
  if (midi.division > 0)
    for (size_t i = 1; i < midi.tempos.size(); ++i) {
      const MidiTempo& a = midi.tempos[i - 1];
      midi.tempos[i].seconds =
          a.seconds + double(midi.tempos[i].tick - a.tick) * double(a.us_per_quarter) * 1e-6 / double(midi.division);
    }
  else
    for (MidiTempo& m : midi.tempos) m.seconds = midi.seconds_at(double(m.tick));

  std::array<int, 16> program{};
  std::map<int, std::deque<size_t>> open;  // channel * 128 + pitch -> notes waiting for their note off
  for (const Event& e : events) {
    const double s = midi.seconds_at(double(e.tick));
    switch (e.kind) {
      case Event::tempo:
        break;
      case Event::time_signature:
        midi.time_signatures.push_back({e.tick, s, e.a, e.b});
        break;
      case Event::key_signature:
        if (!midi.key_signatures.empty() && midi.key_signatures.back().tick == e.tick) midi.key_signatures.pop_back();
        midi.key_signatures.push_back({e.tick, s, e.a, e.b == 1});
        break;
      case Event::program:
        program[size_t(e.channel)] = e.a;
        midi.programs.push_back({e.tick, s, e.channel, e.a});
        break;
      case Event::note_on:
        open[e.channel * 128 + e.a].push_back(midi.notes.size());
        midi.notes.push_back({s, s, e.channel, e.a, e.b, program[size_t(e.channel)], e.track});
        break;
      case Event::note_off: {
        auto it = open.find(e.channel * 128 + e.a);
        if (it == open.end() || it->second.empty()) break;  // a note off without a note on: nothing to end
        midi.notes[it->second.front()].end = s;
        it->second.pop_front();
        break;
      }
    }
  }
  midi.duration = midi.seconds_at(double(last_tick));
  for (const auto& [key, waiting] : open)  // notes never switched off last to the end
    for (size_t i : waiting) midi.notes[i].end = midi.duration;
  std::stable_sort(midi.notes.begin(), midi.notes.end(), [](const MidiNote& a, const MidiNote& b) {
    if (a.start != b.start) return a.start < b.start;
    if (a.channel != b.channel) return a.channel < b.channel;
    return a.pitch < b.pitch;
  });
  return midi;
}

MidiFile read_midi(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) error(path, ": cannot open");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) error(path, ": read error");
  return parse_midi(bytes.data(), bytes.size(), path);
}

std::string midi_tempo_word(double bpm) {
  if (bpm < 90) return "slow";
  if (bpm < 110) return "moderate";
  if (bpm < 130) return "fast";
  return "very fast";
}

std::string midi_instrument_word(int program) {
  if (program < 0 || program > 127) error("midi_instrument_word: program ", program, " is outside 0..127");
  if (program >= 48 && program <= 51) return "strings";
  if (program >= 52 && program <= 54) return "choir";
  if (program == 55) return "orchestra hits";
  // GM level 1's sixteen groups of eight programs (the Ensemble group, 48-55, is split above).
  static const std::array<const char*, 16> kFamilies{
      "piano", "mallet percussion", "organ", "guitar", "bass", "strings", "(ensemble)", "brass",
      "reeds", "flutes", "synth lead", "synth pad", "synth effects", "folk instruments", "percussion", "sound effects"};
  return kFamilies[size_t(program / 8)];
}

MidiKeyEstimate estimate_midi_key(const std::vector<MidiNote>& notes, double t0, double t1,
                                  const MidiKeySignature* signature) {
  std::array<double, 12> weight{};
  double total = 0;
  for (const MidiNote& n : notes) {
    if (n.channel == kMidiDrumChannel) continue;
    const double d = overlap(n.start, n.end, t0, t1);
    weight[size_t(n.pitch % 12)] += d, total += d;
  }
  if (!(total > 0)) return {};
  double mean = 0;
  for (double w : weight) mean += w / 12;
  // Pearson's correlation of the weights with a profile whose tonic is pitch class `tonic`.
  auto correlation = [&](const std::array<double, 12>& profile, int tonic) {
    double my = 0;
    for (double y : profile) my += y / 12;
    double sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < 12; ++i) {
      const double a = weight[size_t((tonic + i) % 12)] - mean, b = profile[size_t(i)] - my;
      sxy += a * b, sxx += a * a, syy += b * b;
    }
    return sxx > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
  };
  MidiKeyEstimate best{"", -2, 0};
  for (int tonic = 0; tonic < 12; ++tonic) {
    const double major = correlation(kMajorProfile, tonic), minor = correlation(kMinorProfile, tonic);
    if (major > best.correlation)
      best.name = std::string(kMajorTonics[size_t(tonic)]) + " major", best.correlation = major;
    if (minor > best.correlation)
      best.name = std::string(kMinorTonics[size_t(tonic)]) + " minor", best.correlation = minor;
  }
  if (signature) {
    const int major_tonic = ((7 * signature->sharps) % 12 + 12) % 12;  // each sharp a fifth up
    best.signature_correlation =
        signature->minor ? correlation(kMinorProfile, (major_tonic + 9) % 12) : correlation(kMajorProfile, major_tonic);
  }
  return best;
}

MidiClipCaption midi_caption(const MidiFile& midi, double t0, double t1) {
  if (!(t1 > t0)) error(midi.name, ": midi_caption: empty clip [", t0, ", ", t1, ")");
  MidiClipCaption c;

  // Tempo: the time-weighted mean BPM over the clip, which is the quarter
  // notes it holds per minute.
  for (size_t i = 0; i < midi.tempos.size(); ++i) {
    const double end = i + 1 < midi.tempos.size() ? midi.tempos[i + 1].seconds : INFINITY;
    c.bpm += midi.tempos[i].bpm() * overlap(midi.tempos[i].seconds, end, t0, t1);
  }
  c.bpm /= t1 - t0;
  c.tempo = midi_tempo_word(c.bpm);

  // Key: that of the key-signature span covering most of the clip.
  const size_t spans = std::max<size_t>(1, midi.key_signatures.size());
  size_t span = 0;
  double most = -1;
  auto span_begin = [&](size_t i) { return i == 0 ? 0.0 : midi.key_signatures[i].seconds; };
  auto span_end = [&](size_t i) {
    return i + 1 < midi.key_signatures.size() ? midi.key_signatures[i + 1].seconds : INFINITY;
  };
  for (size_t i = 0; i < spans; ++i)
    if (const double covered = overlap(span_begin(i), span_end(i), t0, t1); covered > most) most = covered, span = i;
  const MidiKeySignature* signature = midi.key_signatures.empty() ? nullptr : &midi.key_signatures[span];
  const MidiKeyEstimate k = estimate_midi_key(midi.notes, span_begin(span), span_end(span), signature);
  if (signature) c.key_signature = signature->name();
  if (signature && (k.name.empty() || k.signature_correlation >= k.correlation - kMidiKeySignatureTolerance)) {
    c.key = signature->name(), c.key_source = "signature";
  } else if (!k.name.empty() && k.correlation >= kMidiKeyMinCorrelation) {
    c.key = k.name, c.key_source = "estimate";
  }

  // Instruments: sounding time per word inside the clip.
  std::map<std::string, double> seconds;
  std::array<bool, 128> programs{};
  for (const MidiNote& n : midi.notes) {
    if (n.start >= t1) break;  // notes are sorted by start
    const double d = overlap(n.start, n.end, t0, t1);
    if (d <= 0 && !(n.start >= t0 && n.start < t1)) continue;  // a zero-length note inside the clip still plays
    ++c.notes;
    const bool drum = n.channel == kMidiDrumChannel;
    if (drum)
      c.drums = true;
    else
      programs[size_t(n.program)] = true;
    seconds[drum ? "drums" : midi_instrument_word(n.program)] += d;
  }
  for (int p = 0; p < 128; ++p)
    if (programs[size_t(p)]) c.programs.push_back(p);
  std::vector<std::pair<std::string, double>> ranked(seconds.begin(), seconds.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [word, s] : ranked) c.instruments.push_back(word);

  c.text = "a " + c.tempo + " piece at " + std::to_string(std::lround(c.bpm)) + " BPM";
  if (!c.key.empty()) c.text += " in " + c.key;
  if (!c.instruments.empty()) {
    const size_t n = std::min(c.instruments.size(), kMidiCaptionInstruments);
    c.text += " played by " + join_words(std::vector<std::string>(c.instruments.begin(), c.instruments.begin() + n));
  }
  return c;
}

}  // namespace fm::data

// fm prepare midi --from FILE_OR_DIR... --soundfont SF2 --out DIR [options]
//
// A captioned music corpus from MIDI files: each file is rendered by the
// fluidsynth program with a General MIDI soundfont, the render is cut into
// clips, and each clip is captioned from the MIDI itself (fm/data/midi.h:
// tempo, key, instruments). DIR gets mono 16-bit WAV clips and
// captions.jsonl, the layout the music and codec kinds read.
//
// - Files: the --from files, and the .mid/.midi files under the --from
//   folders, sorted by path. Split: every 10th of them (index 9, 19, ...) is
//   val, the others train, so the split is fixed for a fixed set of inputs
//   and both splits are made from the same --from list.
// - Render: `fluidsynth -n -i -q -F render.wav -T wav -O float -r RATE SF2
//   FILE` (reverb and chorus at fluidsynth's defaults), in float so nothing
//   clips, then to mono and scaled so the file's peak is -1 dBFS (one gain
//   per file: loud and quiet passages keep their difference).
// - Clips: back to back from the start, --clip-seconds each; the remainder
//   shorter than a clip is dropped. A clip whose RMS is below --silence-db
//   dBFS (after the scaling) is skipped and counted. With
//   --max-clips-per-file N, a file with more clips keeps N spread evenly
//   over it (clip floor(j * kept / N), j = 0..N-1).
// - Unreadable MIDI files and failed renders are skipped, named and counted.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "../commands.h"
#include "../options.h"
#include "fm/audio/audio.h"
#include "fm/data/midi.h"
#include "fm/error.h"

extern char** environ;

namespace fm::app {
namespace fs = std::filesystem;
namespace {

constexpr double kPeak = 0.8912509381337456;  // -1 dBFS

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The MIDI files named or found (recursively) under the inputs, sorted by path, each once.
std::vector<fs::path> midi_files(const std::vector<std::string>& inputs) {
  std::set<fs::path> found;
  for (const std::string& in : inputs) {
    const fs::path p(in);
    if (fs::is_directory(p)) {
      for (const auto& e : fs::recursive_directory_iterator(p))
        if (e.is_regular_file() &&
            (lower(e.path().extension().string()) == ".mid" || lower(e.path().extension().string()) == ".midi"))
          found.insert(e.path());
    } else if (fs::is_regular_file(p)) {
      found.insert(p);
    } else {
      error("prepare midi: --from ", in, ": no such file or folder");
    }
  }
  return {found.begin(), found.end()};
}

// SoundFont 2 and 3 files are RIFF forms of type 'sfbk'. fluidsynth renders
// silence (and exits 0) when it cannot load one, so it is checked here.
void check_soundfont(const std::string& path) {
  if (path.empty())
    error("prepare midi: --soundfont is required (a General MIDI .sf2, e.g. Debian's fluid-soundfont-gm)");
  std::ifstream in(path, std::ios::binary);
  if (!in) error("prepare midi: --soundfont ", path, ": cannot open");
  char head[12] = {};
  in.read(head, 12);
  if (in.gcount() != 12 || std::memcmp(head, "RIFF", 4) != 0 || std::memcmp(head + 8, "sfbk", 4) != 0)
    error("prepare midi: --soundfont ", path, ": not a SoundFont (no RIFF 'sfbk' header)");
}

// Runs argv[0] (found on PATH) with stdout and stderr into `log`; returns its
// exit status. Throws when the program cannot be started.
int run_program(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    error("prepare midi: cannot run ", argv[0], ": ", std::strerror(rc),
          rc == ENOENT ? " (Debian: apt-get install fluidsynth)" : "");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) error("prepare midi: waiting for ", argv[0], ": ", std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string last_line(const fs::path& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last;
}

// A clip file's stem: the MIDI file's, in [A-Za-z0-9_-], made unique with the file's index.
std::string clip_stem(const fs::path& midi, size_t index, std::set<std::string>& used) {
  std::string s = midi.stem().string();
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  if (s.empty() || used.count(s)) s += "-" + std::to_string(index);
  used.insert(s);
  return s;
}

void write_text(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(text.data(), std::streamsize(text.size()));
    if (!out) error("prepare midi: cannot write ", tmp.string());
  }
  fs::rename(tmp, path);
}

struct Totals {
  int64_t files = 0, skipped_files = 0, clips = 0, silent = 0, capped = 0;
  double seconds = 0, rendered = 0;
};

// One MIDI file: render, cut, caption; appends captions.jsonl lines.
void prepare_file(const fs::path& path, const std::string& stem, const Flags& f, const fs::path& dir,
                  const std::string& split, std::string& jsonl, Totals& t) {
  const data::MidiFile midi = data::read_midi(path.string());
  if (midi.notes.empty()) error(path.string(), ": no notes");
  const int rate = int(f.get_int("sample-rate"));
  const fs::path render = dir / ".render.wav", log = dir / ".fluidsynth.log";
  const int rc = run_program({f.get("fluidsynth"), "-n", "-i", "-q", "-F", render.string(), "-T", "wav", "-O", "float",
                              "-r", std::to_string(rate), f.get("soundfont"), path.string()},
                             log);
  if (rc != 0) error(path.string(), ": fluidsynth exited with ", rc, ": ", last_line(log));
  audio::Audio a = audio::to_mono(audio::read(render.string()));
  fs::remove(render);
  if (a.sample_rate != rate) a = audio::resample(a, rate);
  float peak = 0;
  for (float v : a.samples) peak = std::max(peak, std::fabs(v));
  if (!(peak > 0)) error(path.string(), ": fluidsynth rendered silence (", last_line(log), ")");
  for (float& v : a.samples) v *= float(kPeak / peak);
  t.rendered += a.seconds();

  const int64_t L = std::llround(f.get_double("clip-seconds") * rate);
  const double threshold = std::pow(10.0, f.get_double("silence-db") / 20);
  std::vector<int64_t> kept;
  for (int64_t k = 0; (k + 1) * L <= a.frames(); ++k) {
    double sum = 0;
    for (int64_t i = k * L; i < (k + 1) * L; ++i) sum += double(a.samples[size_t(i)]) * a.samples[size_t(i)];
    if (std::sqrt(sum / double(L)) < threshold)
      ++t.silent;
    else
      kept.push_back(k);
  }
  if (const int64_t cap = f.get_int("max-clips-per-file"); cap > 0 && int64_t(kept.size()) > cap) {
    std::vector<int64_t> spread;
    for (int64_t j = 0; j < cap; ++j) spread.push_back(kept[size_t(j * int64_t(kept.size()) / cap)]);
    t.capped += int64_t(kept.size()) - cap;
    kept = spread;
  }
  for (int64_t k : kept) {
    const double t0 = double(k * L) / rate, t1 = double((k + 1) * L) / rate;
    const data::MidiClipCaption c = data::midi_caption(midi, t0, t1);
    char name[32];
    std::snprintf(name, sizeof name, "_%03lld.wav", (long long)k);
    const std::string file = stem + name;
    audio::write((dir / file).string(),
                 audio::Audio{rate, 1, std::vector<float>(a.samples.begin() + k * L, a.samples.begin() + (k + 1) * L)});
    nlohmann::json line{{"file", file},
                        {"caption", c.text},
                        {"source", path.string()},
                        {"start", t0},
                        {"seconds", t1 - t0},
                        {"split", split},
                        {"bpm", std::round(c.bpm * 10) / 10},
                        {"tempo", c.tempo},
                        {"key", c.key.empty() ? nlohmann::json() : nlohmann::json(c.key)},
                        {"key_source", c.key_source.empty() ? nlohmann::json() : nlohmann::json(c.key_source)},
                        {"key_signature", c.key_signature.empty() ? nlohmann::json() : nlohmann::json(c.key_signature)},
                        {"instruments", c.instruments},
                        {"programs", c.programs},
                        {"drums", c.drums}};
    jsonl += line.dump() + "\n";
    ++t.clips;
    t.seconds += t1 - t0;
  }
  std::printf("  %s: %zu clips (%.0f s rendered)\n", path.string().c_str(), kept.size(), a.seconds());
  std::fflush(stdout);
}

}  // namespace

int cmd_prepare_midi(const std::vector<std::string>& args) {
  Flags f(
      "usage: fm prepare midi --from FILE_OR_DIR... --soundfont SF2 --out DIR [options]\n\n"
      "Renders MIDI files with fluidsynth and a General MIDI soundfont, cuts the renders into clips and\n"
      "captions each clip from the MIDI file (tempo, key, instruments), e.g.\n"
      "  \"a fast piece at 126 BPM in D minor played by piano, strings and drums\".\n"
      "Writes DIR/NAME_NNN.wav (mono, 16 bit) and DIR/captions.jsonl. --from takes files and folders (searched\n"
      "for .mid and .midi); sorted by path, every 10th file is val (--split val), the others train.");
  f.option("soundfont", "", "General MIDI SoundFont (.sf2 or .sf3)")
      .option("out", "", "output folder (replaced)")
      .option("split", "all", "train, val or all")
      .option("clip-seconds", "10", "clip length")
      .option("sample-rate", "32000", "sample rate of the render and the clips (Hz)")
      .option("max-clips-per-file", "0", "keep at most N clips per MIDI file, spread evenly (0: all)")
      .option("silence-db", "-45",
              "skip clips whose RMS is below this (dBFS, after scaling each render's peak to -1 dBFS)")
      .option("fluidsynth", "fluidsynth", "the fluidsynth program");
  // --from takes several values: everything up to the next option.
  std::vector<std::string> inputs, rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--from") {
      while (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) inputs.push_back(args[++i]);
    } else if (args[i].rfind("--from=", 0) == 0) {
      inputs.push_back(args[i].substr(7));
    } else {
      rest.push_back(args[i]);
    }
  }
  if (!f.parse(rest)) return 0;
  if (!f.positional().empty()) error("prepare midi: unexpected argument '", f.positional()[0], "' (see --help)");
  if (inputs.empty()) error("prepare midi: --from is required (MIDI files or folders)");
  const std::string split = f.get("split");
  if (split != "train" && split != "val" && split != "all")
    error("prepare midi: --split must be train, val or all, got '", split, "'");
  const double clip_seconds = f.get_double("clip-seconds");
  if (!(clip_seconds > 0)) error("prepare midi: --clip-seconds must be > 0, got ", clip_seconds);
  const int64_t rate = f.get_int("sample-rate");
  if (rate < audio::kMinSampleRate || rate > audio::kMaxSampleRate)
    error("prepare midi: --sample-rate must be in [", audio::kMinSampleRate, ", ", audio::kMaxSampleRate, "], got ",
          rate);
  if (f.get_int("max-clips-per-file") < 0) error("prepare midi: --max-clips-per-file must be >= 0");
  f.get_double("silence-db");  // a bad number fails now, not after the first render
  check_soundfont(f.get("soundfont"));
  const fs::path out(f.get("out"));
  if (out.empty()) error("prepare midi: --out is required (the dataset folder)");
  const std::vector<fs::path> files = midi_files(inputs);
  if (files.empty()) error("prepare midi: no .mid or .midi files in the --from inputs");

  if (run_program({f.get("fluidsynth"), "--version"}, "/dev/null") != 0)  // fails here, not once per file
    error("prepare midi: ", f.get("fluidsynth"), " --version failed");

  const auto start = std::chrono::steady_clock::now();
  const fs::path tmp = out.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  Totals t;
  std::string jsonl;
  std::set<std::string> stems;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string file_split = i % 10 == 9 ? "val" : "train";
    if (split != "all" && split != file_split) continue;
    ++t.files;
    try {
      prepare_file(files[i], clip_stem(files[i], i, stems), f, tmp, file_split, jsonl, t);
    } catch (const fm::Error& e) {
      ++t.skipped_files;
      std::fprintf(stderr, "prepare midi: skipped %s\n", e.what());
    }
  }
  fs::remove(tmp / ".render.wav");
  fs::remove(tmp / ".fluidsynth.log");
  if (t.clips == 0) {
    fs::remove_all(tmp);
    error("prepare midi: no clips from ", t.files, " MIDI files (", t.skipped_files, " skipped, ", t.silent,
          " silent clips)");
  }
  write_text(tmp / "captions.jsonl", jsonl);
  fs::remove_all(out);
  fs::rename(tmp, out);
  std::printf(
      "prepare midi: %lld of %zu MIDI files (%s split; %lld skipped): %lld clips of %g s at %lld Hz "
      "(%.2f h of %.2f h rendered) in %s; %lld silent clips skipped, %lld over --max-clips-per-file (%.1f s)\n",
      (long long)(t.files - t.skipped_files), files.size(), split.c_str(), (long long)t.skipped_files,
      (long long)t.clips, clip_seconds, (long long)rate, t.seconds / 3600, t.rendered / 3600, out.c_str(),
      (long long)t.silent, (long long)t.capped,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace fm::app

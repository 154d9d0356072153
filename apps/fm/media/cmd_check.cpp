// fm check melodies --captions captions.jsonl [--dir FOLDER] [--verbose]
// Judges audio clips against their captioned-melodies captions with the
// analyser (fm/data/melodies_checker.h), which shares no code with the
// generator: the data set's own clips, a codec's round trips or the clips
// of fm generate music --prompts. Prints one JSON line per clip (file,
// caption, what was heard, each attribute's verdict) and the shares.
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "../commands.h"
#include "../options.h"
#include "fm/audio/audio.h"
#include "fm/data/melodies_checker.h"
#include "fm/error.h"
#include "prompt_file.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

int check_melodies(const std::vector<std::string>& args) {
  Flags f("usage: fm check melodies --captions captions.jsonl [--dir FOLDER] [--verbose]\n\n"
          "Reads each {\"file\", \"caption\"} line, hears the clip with the captioned-melodies analyser and says\n"
          "whether its key, tempo, instrument and register are the caption's. Files are relative to --dir\n"
          "(default: the captions file's folder). Prints a JSON line per clip, then the shares.");
  f.option("captions", "", "captions.jsonl: one {\"file\", \"caption\"} per line (required)")
      .option("dir", "", "folder of the clips (default: the captions file's)")
      .option("verbose", "false", "true: also print the notes heard (onset s, MIDI)");
  if (!f.parse(args)) return 0;
  const std::string captions = f.get("captions");
  if (captions.empty()) error("check melodies: --captions is required\n", f.help());
  const fs::path dir = f.get("dir").empty() ? fs::path(captions).parent_path() : fs::path(f.get("dir"));
  const bool verbose = f.get("verbose") == "true";
  const std::vector<PromptLine> lines = read_prompt_file(captions, "check melodies");
  double key = 0, tempo = 0, timbre = 0, reg = 0, all = 0;
  for (const PromptLine& line : lines) {
    const std::string path = (dir / line.file).string();
    const data::MelodyCaption caption = data::parse_melody_caption(line.caption);
    audio::Audio a = audio::to_mono(audio::read(path));
    if (a.sample_rate != 16000) a = audio::resample(a, 16000);
    const data::MelodyReading r = data::read_melody(a.samples.data(), a.frames(), 16000);
    const data::MelodyCheck c = data::check_melody(r, caption);
    key += c.key, tempo += c.tempo, timbre += c.timbre, reg += c.register_ok, all += c.all();
    nlohmann::json j = {{"file", line.file},
                        {"caption", line.caption},
                        {"heard", {{"key", r.key}, {"bpm", r.bpm}, {"tempo", r.tempo}, {"timbre", r.timbre},
                                   {"register", r.register_word}, {"notes", r.notes.size()}}},
                        {"key", c.key},
                        {"tempo", c.tempo},
                        {"timbre", c.timbre},
                        {"register", c.register_ok},
                        {"all", c.all()}};
    if (verbose) {
      nlohmann::json notes = nlohmann::json::array();
      for (const auto& n : r.notes) notes.push_back({double(n.onset) / 16000.0, n.midi});
      j["notes_heard"] = notes;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  const double n = double(lines.size());
  std::printf("check melodies: %zu clips: all %.1f%%, key %.1f%%, tempo %.1f%%, timbre %.1f%%, register %.1f%%\n",
              lines.size(), 100 * all / n, 100 * key / n, 100 * tempo / n, 100 * timbre / n, 100 * reg / n);
  return 0;
}

}  // namespace

int cmd_check(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "melodies") return check_melodies({args.begin() + 1, args.end()});
  error("check: expected melodies (fm check melodies --captions captions.jsonl)");
}

}  // namespace fm::app

// fm generate music --run DIR --prompt TEXT [--seconds S] [--seed N] --out x.wav|x.flac|x.mp3
// fm generate music --run DIR --prompts captions.jsonl --out DIR
// Everything is generated before anything is written, so a bad prompt or a
// failure midway leaves no partial output; each file is written atomically.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "../commands.h"
#include "../options.h"
#include "fm/audio/audio.h"
#include "fm/error.h"
#include "fm/ops.h"
#include "fm/tasks/mixed.h"
#include "fm/tasks/music.h"
#include "fm/train/recipe.h"
#include "prompt_file.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

const char* kCommand = "generate music";

bool audio_extension(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".wav" || e == ".flac" || e == ".mp3";
}

}  // namespace

int cmd_generate_music(const std::vector<std::string>& args) {
  Flags f("usage: fm generate music --run DIR (--prompt TEXT --out FILE | --prompts captions.jsonl --out DIR) [options]\n\n"
          "Generates audio with the newest checkpoint of a music run (or a mixed run with audio) and its codec run.\n"
          "FILE ends in .wav, .flac or .mp3; --prompts writes one file per line under its 'file' name.");
  f.option("run", "", "run directory made by fm train (task.kind = music, or mixed with model.codec)")
      .option("prompt", "\n", "what the music should sound like")
      .option("prompts", "", "a captions.jsonl ({\"file\", \"caption\"} per line) instead of --prompt")
      .option("out", "", "the audio file to write (--prompt), or the folder (--prompts)")
      .option("seconds", "", "length of each clip (default: the longest the model was trained for)")
      .option("guidance", "", "classifier-free guidance scale (default: the run's sample.guidance)")
      .option("top-k", "", "sample among the k most likely codes (default: the run's sample.top_k)")
      .option("temperature", "", "sampling temperature (default: the run's)")
      .option("seed", "1", "sampling seed")
      .option("batch", "16", "clips generated at once");
  if (!f.parse(args)) return 0;
  const std::string dir = f.get("run"), out = f.get("out"), prompt = f.get("prompt"), prompts_file = f.get("prompts");
  if (dir.empty()) error(kCommand, ": --run DIR is required");
  if (out.empty()) error(kCommand, ": --out is required");
  const bool has_prompt = prompt != "\n";
  if (has_prompt == !prompts_file.empty()) error(kCommand, ": give --prompt TEXT or --prompts FILE, one of them");
  if (has_prompt && prompt.find_first_not_of(" \t\r\n") == std::string::npos) error(kCommand, ": the prompt is empty");
  const int64_t batch = f.get_int("batch");
  if (batch < 1) error(kCommand, ": --batch must be at least 1, got ", batch);
  double seconds = 0;
  if (!f.get("seconds").empty()) {
    seconds = f.get_double("seconds");
    if (!(seconds > 0) || !std::isfinite(seconds)) error(kCommand, ": --seconds must be > 0, got ", f.get("seconds"));
  }
  const train::Config config = train::load_run_config(dir);
  const std::string kind = config.get_string("task.kind");
  if (kind != "music" && (kind != "mixed" || config.get_string("model.codec").empty()))
    error(kCommand, ": ", dir, " is a '", kind, "' run, not a music run", kind == "mixed" ? " (nor a mixed run with audio)" : "");
  std::vector<PromptLine> lines;
  if (!prompts_file.empty()) {
    lines = read_prompt_file(prompts_file, kCommand);
    check_writable_dir(out, "--out", kCommand);
    for (const auto& l : lines)
      if (!audio_extension(l.file)) error(kCommand, ": ", prompts_file, ": '", l.file, "' must end in .wav, .flac or .mp3");
  } else {
    if (!audio_extension(out)) error(kCommand, ": --out ", out, " must end in .wav, .flac or .mp3");
    const fs::path parent = fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
    check_writable_dir(parent, "the folder of --out", kCommand);
    lines.push_back({out, prompt});
  }

  // A music run, or a mixed run playing through its one transformer.
  std::optional<tasks::MusicRun> music;
  std::optional<tasks::MixedRun> mixed;
  if (kind == "mixed") mixed.emplace(tasks::load_mixed_run(dir));
  else music.emplace(tasks::load_music_run(dir));
  struct {
    tasks::MusicSampling& sampling;
    const tasks::Codec& codec;
  } run{mixed ? mixed->sampling : music->sampling, mixed ? *mixed->codec : *music->codec};
  const double most = mixed ? mixed->max_seconds() : tasks::max_music_seconds(*music->model, *music->codec);
  if (seconds == 0) seconds = most;
  if (seconds > most)
    error(kCommand, ": --seconds ", seconds, " is longer than this model generates (", most, " s, ",
          mixed ? "model.max_positions" : "model.max_steps", ")");
  if (!f.get("guidance").empty()) run.sampling.guidance = f.get_double("guidance");
  if (!f.get("top-k").empty()) run.sampling.top_k = f.get_int("top-k");
  if (!f.get("temperature").empty()) run.sampling.temperature = f.get_double("temperature");
  if (!(run.sampling.temperature > 0)) error(kCommand, ": --temperature must be > 0");
  if (run.sampling.top_k < 0) error(kCommand, ": --top-k must be >= 0");
  const int rate = int(run.codec.options.sample_rate);
  std::fprintf(stderr, "fm generate music: %s, %.2f s at %d Hz, guidance %g, top-k %lld\n", dir.c_str(), seconds, rate,
               run.sampling.guidance, (long long)run.sampling.top_k);
  std::vector<Tensor> waves;
  for (size_t start = 0; start < lines.size(); start += size_t(batch)) {
    std::vector<std::string> captions;
    for (size_t i = start; i < std::min(lines.size(), start + size_t(batch)); ++i) captions.push_back(lines[i].caption);
    Generator gen(uint64_t(f.get_int("seed")) + start);
    for (Tensor& w : mixed ? mixed->play(captions, seconds, gen) : music->generate(captions, seconds, gen)) waves.push_back(w);
    if (lines.size() > 1) std::fprintf(stderr, "generated %zu/%zu\n", waves.size(), lines.size());
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    const fs::path p = prompts_file.empty() ? fs::path(out) : fs::path(out) / lines[i].file;
    if (!p.parent_path().empty()) fs::create_directories(p.parent_path());
    audio::write(p.string(), audio::from_tensor(fm::clamp(waves[i], -1.0, 1.0), rate));
  }
  if (prompts_file.empty()) std::printf("%s\n", out.c_str());
  else std::printf("%zu clips in %s\n", lines.size(), out.c_str());
  return 0;
}

}  // namespace fm::app

// fm prepare melodies --n N --seed S [--split train|val] --out DIR
// fm prepare melodies --prompts [--k K] --out FILE.jsonl
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../commands.h"
#include "../options.h"
#include "fm/audio/audio.h"
#include "fm/data/melodies.h"
#include "fm/error.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

// Written beside `path` and renamed into place: readers see the old file or the whole new one.
void write_text(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(text.data(), std::streamsize(text.size()));
    if (!out) error("prepare melodies: cannot write ", tmp.string());
  }
  fs::rename(tmp, path);
}

// The clip as the spec stores it: 16-bit integers round(32767 x). Our writer
// stores round(v * 32768), so v = round(32767 x) / 32768, exact in a float,
// gives those integers whatever the float rounding of x * 32767 / 32768.
audio::Audio to_pcm16_audio(const std::vector<float>& x) {
  audio::Audio a{data::kMelodySampleRate, 1, std::vector<float>(x.size())};
  for (size_t i = 0; i < x.size(); ++i) a.samples[i] = float(std::lround(32767.0 * double(x[i]))) / 32768.0f;
  return a;
}

// The evaluation prompts: the 288 captions in melody_captions() order, K
// passes over them, no audio; a generator writes one WAV per `file`.
int prepare_prompts(const Flags& f) {
  const int64_t k = f.get_int("k");
  if (k < 1) error("prepare melodies: --k must be at least 1, got ", k);
  const fs::path out(f.get("out"));
  if (out.empty()) error("prepare melodies: --out is required (the prompts' .jsonl file)");
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  const std::vector<std::string> captions = data::melody_captions();
  std::string jsonl;
  int64_t line = 0;
  for (int64_t pass = 0; pass < k; ++pass)
    for (const std::string& c : captions) {
      char name[32];
      std::snprintf(name, sizeof name, "gen_%06lld.wav", (long long)line++);
      jsonl += nlohmann::json{{"file", name}, {"caption", c}}.dump() + "\n";
    }
  write_text(out, jsonl);
  std::printf("prepare melodies: %lld prompts (%zu captions x %lld) in %s\n", (long long)line, captions.size(),
              (long long)k, out.c_str());
  return 0;
}

// The dataset of ../shared/specs/captioned-melodies.md: WAVs and
// captions.jsonl, written into a temporary folder renamed into place at the
// end, so DIR is either the old dataset or the whole new one.
int prepare_clips(const Flags& f) {
  data::MelodyOptions o;
  o.split = f.get("split");
  if (o.split != "train" && o.split != "val")
    error("prepare melodies: --split must be train or val, got '", o.split, "'");
  const int64_t seed = f.get_int("seed");
  if (seed < 0) error("prepare melodies: --seed must not be negative, got ", seed);
  o.seed = uint64_t(seed);
  const int64_t n = f.get("n").empty() ? (o.split == "train" ? 8192 : 256) : f.get_int("n");
  if (n < 1) error("prepare melodies: --n must be at least 1, got ", n);
  const fs::path out(f.get("out"));
  if (out.empty()) error("prepare melodies: --out is required (the dataset folder)");
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path tmp = out.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::vector<std::string> lines(static_cast<size_t>(n));
  std::vector<std::string> failures(static_cast<size_t>(omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const data::MelodySample s = data::generate_melody_sample(o, i);
      char name[32];
      std::snprintf(name, sizeof name, "mel_%06lld.wav", (long long)i);
      audio::write((tmp / name).string(), to_pcm16_audio(s.samples));
      lines[size_t(i)] =
          nlohmann::json{{"file", name},       {"caption", s.caption},    {"key", s.key},  {"tempo_bpm", s.bpm},
                         {"timbre", s.timbre}, {"register", s.register_}, {"midi", s.midi}}
              .dump();
    } catch (const std::exception& e) {
      failures[size_t(omp_get_thread_num())] = e.what();
    }
  }
  for (const auto& m : failures)
    if (!m.empty()) error("prepare melodies: ", m);
  std::string jsonl;
  for (const auto& l : lines) jsonl += l + "\n";
  write_text(tmp / "captions.jsonl", jsonl);
  fs::remove_all(out);
  fs::rename(tmp, out);
  std::printf("prepare melodies: %lld clips of 4.0 s at 16 kHz (%s, seed %llu) in %s (%.1f s)\n", (long long)n,
              o.split.c_str(), (unsigned long long)o.seed, out.c_str(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

int cmd_prepare_melodies(const std::vector<std::string>& args) {
  Flags f("usage: fm prepare melodies --n N --seed S [--split train|val] --out DIR\n"
          "       fm prepare melodies --prompts [--k K] --out FILE.jsonl\n\n"
          "Generates the captioned-melodies dataset (4 s, 16 kHz mono melodies; captions naming tempo, key,\n"
          "instrument and register): DIR/mel_NNNNNN.wav and DIR/captions.jsonl. Deterministic.\n"
          "With --prompts (a flag, no value), writes the evaluation prompts instead: the 288 captions,\n"
          "K times each, as {\"file\": \"gen_NNNNNN.wav\", \"caption\": ...} lines, without audio.");
  f.option("n", "", "clips (default 8192 for train, 256 for val)")
      .option("seed", "0", "seed")
      .option("split", "train", "train or val (disjoint streams for the same seed)")
      .option("k", "1", "with --prompts: passes over the 288 captions")
      .option("out", "", "output folder (replaced), or with --prompts the .jsonl file");
  // --prompts takes no value, which Flags does not model: it is taken out first.
  std::vector<std::string> rest;
  bool prompts = false;
  for (const std::string& a : args) {
    if (a == "--prompts")
      prompts = true;
    else
      rest.push_back(a);
  }
  if (!f.parse(rest)) return 0;
  if (!f.positional().empty()) error("prepare melodies: unexpected argument '", f.positional()[0], "' (see --help)");
  return prompts ? prepare_prompts(f) : prepare_clips(f);
}

}  // namespace fm::app

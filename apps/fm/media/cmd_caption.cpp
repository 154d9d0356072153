// fm caption --run DIR IMAGE... | --dir FOLDER [--beam 5] [--out captions.jsonl]
// One JSON line per image: {"file", "caption", "score"}. A file that cannot
// be read or decoded is reported with its path and left out, and the count
// of such files makes the exit code 1; the others are still captioned. The
// output file is written atomically at the end.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <nlohmann/json.hpp>

#include "../commands.h"
#include "../options.h"
#include "fm/data/image_text.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/io/atomic_file.h"
#include "fm/ops.h"
#include "fm/tasks/caption.h"
#include "fm/tasks/image_text_data.h"
#include "fm/tasks/mixed.h"
#include "fm/train/recipe.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

bool is_image_extension(const std::string& e) {
  static const char* kinds[] = {"png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "ppm", "pgm"};
  return std::any_of(std::begin(kinds), std::end(kinds), [&](const char* k) { return e == k; });
}
bool is_audio_extension(const std::string& e) {
  static const char* kinds[] = {"wav", "flac", "ogg", "mp3", "m4a", "aac", "opus"};
  return std::any_of(std::begin(kinds), std::end(kinds), [&](const char* k) { return e == k; });
}

// The images (or, for an audio captioner, the audio files) of a folder (not
// recursive), sorted by name.
std::vector<std::string> folder_files(const std::string& dir, bool audio) {
  if (!fs::is_directory(dir)) error("--dir ", dir, " is not a directory");
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string e = data::image_format_of(entry.path().string());
    if (entry.is_regular_file() && (audio ? is_audio_extension(e) : is_image_extension(e)))
      files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    error("--dir ", dir, audio ? " holds no audio files (wav, flac, ogg, mp3, m4a, aac, opus)"
                               : " holds no images (png, jpg, jpeg, webp, bmp, tif, ppm, pgm)");
  return files;
}

}  // namespace

int cmd_caption(const std::vector<std::string>& args) {
  Flags f("usage: fm caption --run DIR (FILE... | --dir FOLDER) [--beam N] [--out captions.jsonl]\n\n"
          "Captions images (or audio files, for an audio captioner) with the newest checkpoint\n"
          "(EMA weights when kept) of a caption run or a mixed run.\n"
          "Prints (or writes to --out) one JSON line per image: {\"file\", \"caption\", \"score\"}.");
  f.option("run", "", "run directory made by fm train (task.kind = caption or mixed)")
      .option("dir", "", "caption every image of this folder (sorted by name)")
      .option("out", "", "write the JSON lines to this file instead of stdout")
      .option("beam", "", "beam width, >= 1 (default: the run's decode.beam)")
      .option("max-tokens", "", "tokens generated at most (default: the run's decode.max_tokens)")
      .option("sample", "false", "draw captions (top-k / top-p) instead of searching (beam 1)")
      .option("top-k", "0", "sampling: the k most likely tokens only (0: all)")
      .option("top-p", "1", "sampling: nucleus mass")
      .option("temperature", "1", "sampling temperature")
      .option("seed", "1", "sampling seed")
      .option("batch", "32", "images captioned at once");
  if (!f.parse(args)) return 0;
  const std::string dir = f.get("run");
  if (dir.empty()) error("--run DIR is required");
  std::vector<std::string> files = f.positional();
  const int64_t batch = f.get_int("batch");
  if (batch < 1) error("--batch must be at least 1, got ", batch);
  const train::Config config = train::load_run_config(dir);
  const std::string kind = config.get_string("task.kind");
  if (kind != "caption" && kind != "mixed") error(dir, " is a '", kind, "' run, not a caption or mixed run");
  if (!f.get("dir").empty()) {
    if (!files.empty()) error("give files or --dir FOLDER, not both");
    files = folder_files(f.get("dir"), config.get_string("model.modality") == "audio");
  }
  if (files.empty()) error("no files given (IMAGE... or AUDIO... or --dir FOLDER)");
  // A caption run, or a mixed run captioning through its one transformer.
  std::optional<tasks::CaptionRun> caption_run;
  std::optional<tasks::MixedRun> mixed_run;
  if (kind == "mixed") mixed_run.emplace(tasks::load_mixed_run(dir));
  else caption_run.emplace(tasks::load_caption_run(dir));
  const text::BpeTokenizer& tokenizer = mixed_run ? mixed_run->tokenizer : caption_run->tokenizer;
  const int64_t context = mixed_run ? config.get_int("model.context_length") + 1 : caption_run->model->options.context_length;
  tasks::DecodeOptions o = mixed_run ? mixed_run->decode : caption_run->decode;
  if (!f.get("beam").empty()) o.beam = f.get_int("beam");
  if (!f.get("max-tokens").empty()) o.max_tokens = f.get_int("max-tokens");
  o.sample = f.get("sample") == "true";
  if (o.sample) o.beam = 1;
  o.top_k = f.get_int("top-k");
  o.top_p = f.get_double("top-p");
  o.temperature = f.get_double("temperature");
  if (o.beam < 1) error("--beam must be at least 1, got ", o.beam);
  if (o.max_tokens < 1 || o.max_tokens > context - 1)
    error("--max-tokens must be 1 to ", context - 1, ", got ", o.max_tokens);
  Generator gen(uint64_t(f.get_int("seed")));
  const int32_t eot = tasks::end_of_text_id(tokenizer);

  std::string lines;
  int64_t skipped = 0, done = 0;
  for (size_t start = 0; start < files.size(); start += size_t(batch)) {
    std::vector<Tensor> images;
    std::vector<std::string> names;
    for (size_t i = start; i < std::min(files.size(), start + size_t(batch)); ++i) {
      try {
        images.push_back(mixed_run ? mixed_run->load_image(files[i]) : caption_run->load_image(files[i]));
        names.push_back(files[i]);
      } catch (const Error& e) {
        std::fprintf(stderr, "fm caption: skipped %s\n", e.what());
        ++skipped;
      }
    }
    if (images.empty()) continue;
    const auto captions = mixed_run ? tasks::mixed_caption_images(*mixed_run->model, stack(images, 0), eot, o, &gen)
                                    : tasks::caption_images(*caption_run->model, stack(images, 0), eot, o, &gen);
    for (size_t i = 0; i < captions.size(); ++i) {
      nlohmann::ordered_json j = {{"file", names[i]}, {"caption", tokenizer.decode(captions[i].tokens)}, {"score", captions[i].score}};
      lines += j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    }
    done += int64_t(captions.size());
  }
  if (f.get("out").empty()) {
    std::fputs(lines.c_str(), stdout);
  } else {
    io::AtomicFile out(f.get("out"), "fm caption");
    out.write(lines.data(), lines.size());
    out.commit();
    std::fprintf(stderr, "fm caption: %lld captions in %s\n", static_cast<long long>(done), f.get("out").c_str());
  }
  if (skipped) std::fprintf(stderr, "fm caption: skipped %lld of %zu files\n", static_cast<long long>(skipped), files.size());
  return skipped ? 1 : 0;
}

}  // namespace fm::app

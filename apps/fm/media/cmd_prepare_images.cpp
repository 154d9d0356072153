// fm prepare shapes --size 32|64 --split train|test --n N --seed S --out DIR
// fm prepare images --from SOURCE --out DIR [--name N] [--shard-size N] [--classes LIST]
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "../commands.h"
#include "../options.h"
#include "fm/data/shapes.h"
#include "fm/data/wds.h"
#include "fm/error.h"
#include "fm/image/image.h"
#include "fm/tasks/image_text_data.h"

namespace fm::app {
namespace fs = std::filesystem;
namespace {

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) error("prepare: cannot write ", path.string());
}

// The dataset of ../shared/specs/captioned-shapes.md: PNGs and captions.jsonl.
// Written into a temporary folder renamed into place at the end, so DIR is
// either the old dataset or the whole new one.
int prepare_shapes(const std::vector<std::string>& args) {
  Flags f("usage: fm prepare shapes --size 32|64 --split train|test --n N --seed S --out DIR\n\n"
          "Generates the captioned-shapes dataset (one or two flat shapes, captions naming colour,\n"
          "type, size and position or relation): DIR/NNNNNN.png and DIR/captions.jsonl. Deterministic.");
  f.option("size", "32", "image side: 32 or 64")
      .option("split", "train", "train (held-out colour-type pairs excluded) or test")
      .option("n", "50000", "images")
      .option("seed", "0", "seed")
      .option("out", "", "output folder (replaced)");
  if (!f.parse(args)) return 0;
  data::ShapesOptions o;
  o.width = int(f.get_int("size"));
  o.split = f.get("split");
  o.seed = uint64_t(f.get_int("seed"));
  if (o.width != 32 && o.width != 64) error("prepare shapes: --size must be 32 or 64, got ", o.width);
  if (o.split != "train" && o.split != "test") error("prepare shapes: --split must be train or test");
  const int64_t n = f.get_int("n");
  if (n < 1) error("prepare shapes: --n must be at least 1");
  const fs::path out(f.get("out"));
  if (out.empty()) error("prepare shapes: --out is required");
  const fs::path tmp = out.string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::vector<std::string> captions(static_cast<size_t>(n));
  std::vector<std::string> failures(static_cast<size_t>(omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t i = 0; i < n; ++i) {
    try {
      const data::ShapesSample s = data::generate_shape_sample(o, i);
      char name[32];
      std::snprintf(name, sizeof name, "%06lld.png", (long long)i);
      write_bytes(tmp / name, image::encode_png({s.width, s.width, 3, s.rgb}));
      captions[size_t(i)] = nlohmann::json{{"file", name}, {"caption", s.caption}}.dump();
    } catch (const std::exception& e) {
      failures[size_t(omp_get_thread_num())] = e.what();
    }
  }
  for (const auto& m : failures)
    if (!m.empty()) error("prepare shapes: ", m);
  std::string jsonl;
  for (const auto& c : captions) jsonl += c + "\n";
  write_bytes(tmp / "captions.jsonl", jsonl);
  fs::remove_all(out);
  fs::rename(tmp, out);
  std::printf("prepare shapes: %lld images of %dx%d (%s, seed %llu) in %s\n", (long long)n, o.width, o.width,
              o.split.c_str(), (unsigned long long)o.seed, out.c_str());
  return 0;
}

// Any image-text source -> WebDataset shards (raw pixels become PNGs).
int prepare_images(const std::vector<std::string>& args) {
  Flags f("usage: fm prepare images --from SOURCE --out DIR [options]\n\n"
          "Writes WebDataset shards (DIR/NAME-000000.tar, ...: KEY.png|jpg + KEY.txt [+ KEY.cls]) from a\n"
          "caption folder or file (captions.jsonl, CSV/TSV), WebDataset shards, or idx:IMAGES,LABELS.");
  f.option("from", "", "source, as the data.* keys of a recipe take it")
      .option("out", "", "output folder")
      .option("name", "data", "shard name prefix")
      .option("shard-size", "10000", "samples per shard")
      .option("classes", "", "class names for IDX labels (comma-separated, or fashion-mnist)");
  if (!f.parse(args)) return 0;
  if (f.get("from").empty() || f.get("out").empty()) error("prepare images: --from and --out are required");
  const auto source = tasks::open_image_text(f.get("from"), tasks::parse_class_list(f.get("classes")));
  data::WebDatasetWriter writer(f.get("out"), f.get("name"), f.get_int("shard-size"));
  for (int64_t i = 0; i < source->size(); ++i) {
    data::ImageTextSample s = source->read(i);
    if (!s.pixels.empty()) {
      s.image = image::encode_png({s.height, s.width, s.channels, s.pixels});
      s.image_format = "png";
      s.pixels.clear();
    }
    for (char& c : s.key)
      if (c == '.' || c == ':' || c == '/') c = '_';  // tar member names: KEY.ext
    writer.write(s);
  }
  const auto shards = writer.close();
  std::printf("prepare images: %lld samples from %s into %zu shards in %s", (long long)writer.samples_written(),
              source->name().c_str(), shards.size(), f.get("out").c_str());
  if (source->skipped() > 0) std::printf(" (%lld entries of the source skipped)", (long long)source->skipped());
  std::printf("\n");
  return 0;
}

}  // namespace

int cmd_prepare_media(const std::vector<std::string>& args) {
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  return args[0] == "shapes" ? prepare_shapes(rest) : prepare_images(rest);
}

}  // namespace fm::app

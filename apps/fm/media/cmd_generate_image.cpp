// fm generate image --run DIR --prompt TEXT [--n 16] --out x.png
// fm generate image --run DIR --prompts captions.jsonl --out DIR
// Everything is generated before anything is written, so a bad prompt or a
// failure midway leaves no partial output; each file is written atomically.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>

#include "../commands.h"
#include "fm/error.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/tasks/diffusion.h"
#include "fm/tasks/mixed.h"
#include "fm/train/recipe.h"
#include "../options.h"
#include "prompt_file.h"

namespace fm::app {
namespace fs = std::filesystem;
int cmd_generate_image(const std::vector<std::string>& args) {
  Flags f("usage: fm generate image --run DIR (--prompt TEXT --out FILE.png | --prompts captions.jsonl --out DIR) [options]\n\n"
          "Generates images with the newest checkpoint (EMA weights when kept) of a diffusion or mixed run.\n"
          "With --n > 1 one prompt gives a grid; --prompts writes one PNG per line under its 'file' name.");
  f.option("run", "", "run directory made by fm train (task.kind = diffusion or mixed)")
      .option("prompt", "\n", "what the image should show")
      .option("prompts", "", "a captions.jsonl ({\"file\", \"caption\"} per line) instead of --prompt")
      .option("out", "", "the PNG to write (--prompt), or the folder (--prompts)")
      .option("n", "1", "images of the prompt, in a grid (--prompt only)")
      .option("steps", "", "sampling steps (default: the run's diffusion.steps)")
      .option("sampler", "", "ddpm, ddim, euler, heun, dpmpp_2m, flow_euler, flow_heun (default: the run's)")
      .option("cfg", "", "classifier-free guidance scale, >= 0 (default: the run's diffusion.cfg)")
      .option("seed", "1", "noise seed")
      .option("batch", "64", "images generated at once")
      .option("device", "cpu", "cpu or cuda");
  if (!f.parse(args)) return 0;
  const std::string dir = f.get("run"), out = f.get("out"), prompt = f.get("prompt"), prompts_file = f.get("prompts");
  if (dir.empty()) error("generate image: --run DIR is required");
  if (out.empty()) error("generate image: --out is required");
  const bool has_prompt = prompt != "\n";
  if (has_prompt == !prompts_file.empty()) error("generate image: give --prompt TEXT or --prompts FILE, one of them");
  if (has_prompt && prompt.find_first_not_of(" \t\r\n") == std::string::npos) error("generate image: the prompt is empty");
  const int64_t n = f.get_int("n"), batch = f.get_int("batch");
  if (n < 1) error("generate image: --n must be at least 1, got ", n);
  if (batch < 1) error("generate image: --batch must be at least 1, got ", batch);

  // Everything that can be checked before the model loads is checked now.
  const train::Config config = train::load_run_config(dir);
  const std::string kind = config.get_string("task.kind");
  if (kind != "diffusion" && kind != "mixed")
    error("generate image: ", dir, " is a '", kind, "' run, not a diffusion or mixed run");
  tasks::GenerateOptions o = tasks::generate_defaults(config);
  if (!f.get("steps").empty()) o.steps = f.get_int("steps");
  if (!f.get("sampler").empty()) o.sampler = f.get("sampler");
  if (!f.get("cfg").empty()) o.cfg = f.get_double("cfg");
  o.seed = uint64_t(f.get_int("seed"));
  if (o.steps < 1) error("generate image: --steps must be at least 1, got ", o.steps);
  if (!(o.cfg >= 0) || !std::isfinite(o.cfg)) error("generate image: --cfg must be a finite number >= 0, got ", f.get("cfg"));
  objectives::make_sampler(o.sampler, tasks::sampler_options(config));  // an unknown name fails before the model loads
  std::vector<PromptLine> lines;
  if (!prompts_file.empty()) {
    lines = read_prompt_file(prompts_file, "generate image");
    check_writable_dir(out, "--out", "generate image");
  } else {
    if (fs::path(out).extension() != ".png") error("generate image: --out ", out, " must name a .png file");
    const fs::path parent = fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
    check_writable_dir(parent, "the folder of --out", "generate image");
  }

  // A diffusion run's pipeline, or a mixed run drawing through its one transformer.
  std::unique_ptr<tasks::TextToImageRun> t2i;
  std::optional<tasks::MixedRun> mixed;
  tasks::ImageGenerator generate;
  int64_t step = 0;
  if (kind == "mixed") {
    mixed.emplace(tasks::load_mixed_run(dir, train::parse_device(f.get("device"))));
    generate = [&mixed](const std::vector<std::string>& p, const tasks::GenerateOptions& go, int64_t* t) {
      return mixed->generate_images(p, go, t);
    };
    step = mixed->step;
  } else {
    t2i = tasks::load_text2image_run(dir, train::parse_device(f.get("device")));
    generate = [&t2i](const std::vector<std::string>& p, const tasks::GenerateOptions& go, int64_t* t) {
      return t2i->pipeline->generate(p, go, t);
    };
    step = t2i->step;
  }
  std::fprintf(stderr, "fm generate image: %s step %lld, sampler %s, %lld steps, cfg %g\n", dir.c_str(),
               (long long)step, o.sampler.c_str(), (long long)o.steps, o.cfg);
  if (lines.empty()) {
    const Tensor images = generate(std::vector<std::string>(size_t(n), prompt), o, nullptr);
    const Tensor grid = n == 1 ? images.select(0, 0) : tasks::image_grid(images, int64_t(std::ceil(std::sqrt(double(n)))));
    image::write(out, image::from_tensor(grid));
    std::printf("%s\n", out.c_str());
    return 0;
  }
  std::vector<image::Image> images;
  for (size_t start = 0; start < lines.size(); start += size_t(batch)) {
    std::vector<std::string> captions;
    for (size_t i = start; i < std::min(lines.size(), start + size_t(batch)); ++i) captions.push_back(lines[i].caption);
    tasks::GenerateOptions bo = o;
    bo.seed = o.seed + start;
    const Tensor x = generate(captions, bo, nullptr);
    for (int64_t i = 0; i < x.size(0); ++i) images.push_back(image::from_tensor(x.select(0, i)));
    std::fprintf(stderr, "generated %zu/%zu\n", images.size(), lines.size());
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    const fs::path p = fs::path(out) / lines[i].file;
    fs::create_directories(p.parent_path());
    image::write(p.string(), images[i]);
  }
  std::printf("%zu images in %s\n", lines.size(), out.c_str());
  return 0;
}

}  // namespace fm::app

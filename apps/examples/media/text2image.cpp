// Text to image with a trained diffusion run, using libfm as a library: the
// run's DiT and caption encoder (EMA weights when kept), any sampler, and
// classifier-free guidance, as `fm generate image` does.
//
//   build/bin/text2image --run runs/t2i_shapes --prompt "a large red circle on the left" \
//                        [--n 4] [--sampler flow_heun] [--steps 30] [--cfg 3] --out x.png
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "fm/fm.h"
#include "fm/image/image.h"
#include "fm/image/transforms.h"
#include "fm/tasks/diffusion.h"

int main(int argc, char** argv) {
  std::string run, prompt, out = "text2image.png", sampler, steps, cfg, n = "1";
  for (int i = 1; i + 1 < argc || (i < argc && std::string(argv[i]) == "--help"); ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      std::printf("usage: text2image --run RUN_DIR --prompt TEXT [--n N] [--sampler NAME] [--steps N] [--cfg S] [--out x.png]\n");
      return 0;
    }
    std::string* dest = a == "--run" ? &run : a == "--prompt" ? &prompt : a == "--out" ? &out : a == "--sampler" ? &sampler
                      : a == "--steps" ? &steps : a == "--cfg" ? &cfg : a == "--n" ? &n : nullptr;
    if (!dest) {
      std::fprintf(stderr, "text2image: unknown argument '%s' (try --help)\n", a.c_str());
      return 1;
    }
    *dest = argv[++i];
  }
  try {
    if (run.empty() || prompt.empty()) fm::error("need --run and --prompt (try --help)");
    const auto t2i = fm::tasks::load_text2image_run(run);
    fm::tasks::GenerateOptions o = fm::tasks::generate_defaults(t2i->config);  // the run's sampler, steps, cfg
    if (!sampler.empty()) o.sampler = sampler;
    if (!steps.empty()) o.steps = std::stoll(steps);
    if (!cfg.empty()) o.cfg = std::stod(cfg);
    const int64_t count = std::stoll(n);
    if (count < 1) fm::error("--n must be at least 1");
    const fm::Tensor images = t2i->pipeline->generate(std::vector<std::string>(size_t(count), prompt), o);
    const fm::Tensor picture =
        count == 1 ? images.select(0, 0) : fm::tasks::image_grid(images, int64_t(std::ceil(std::sqrt(double(count)))));
    fm::image::write(out, fm::image::from_tensor(picture));
    std::printf("%s\n", out.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "text2image: %s\n", e.what());
    return 1;
  }
}

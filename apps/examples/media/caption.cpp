// Captioning images with a trained caption run, using libfm as a library:
// the run's model (EMA weights when kept), its evaluation transform and its
// decoding options (beam search with a KV cache), as `fm caption` does.
//
//   build/bin/caption --run runs/caption_shapes [--beam 5] some.png other.png
#include <cstdio>
#include <string>
#include <vector>

#include "fm/fm.h"
#include "fm/tasks/caption.h"

int main(int argc, char** argv) {
  std::string run;
  int64_t beam = 0;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help") {
      std::printf("usage: caption --run RUN_DIR [--beam N] IMAGE...\n");
      return 0;
    }
    if ((a == "--run" || a == "--beam") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--run") run = v;
      else beam = std::stoll(v);
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "caption: unknown argument '%s' (try --help)\n", a.c_str());
      return 1;
    } else {
      files.push_back(a);
    }
  }
  try {
    if (run.empty() || files.empty()) fm::error("need --run and at least one image (try --help)");
    fm::tasks::CaptionRun r = fm::tasks::load_caption_run(run);
    if (beam > 0) r.decode.beam = beam;
    const std::vector<std::string> captions = r.caption_files(files);
    for (size_t i = 0; i < files.size(); ++i) std::printf("%s\t%s\n", files[i].c_str(), captions[i].c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "caption: %s\n", e.what());
    return 1;
  }
}

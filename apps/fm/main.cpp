// fm: libfm's command line.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "commands.h"
#include "fm/dist/communicator.h"
#include "fm/error.h"

namespace {

void usage() {
  std::printf(
      "usage: fm COMMAND [options]\n\n"
      "commands:\n"
      "  train CONFIG.ini [--resume] [--key=value ...]   train a model from an experiment recipe\n"
      "  finetune CONFIG.ini --from RUN [--key=value ...]  fine-tune a run: full, LoRA, probe or bias-only\n"
      "  eval RUN_DIR [--key=value ...]                  evaluate a run's newest checkpoint (JSON)\n"
      "  eval RUN_DIR --suite SUITE.ini                  run an evaluation suite; results in RUN_DIR/eval/\n"
      "  eval --compare RUN_A RUN_B [--suite NAME]       two runs' suite results side by side\n"
      "  sweep CONFIG.ini --grid \"K=V1,V2 ...\" [--out D]  train a recipe at every point of a grid\n"
      "  scaling fit SWEEP_DIR [--x compute] [--plot F]  fit scaling laws to a sweep's losses\n"
      "  export RUN_DIR --out DIR [--format libfm|hf]     write a run's weights with a JSON config (hf: GPT-2)\n"
      "  import hf-gpt2 --from HF_DIR --out RUN_DIR       make an lm run of a Hugging Face GPT-2\n"
      "  generate text --run DIR --prompt TEXT [...]      sample text from a trained run\n"
      "  generate image --run DIR --prompt TEXT --out F   images from a text-to-image run\n"
      "  generate music --run DIR --prompt TEXT --out F   audio from a text-to-music run\n"
      "  caption --run DIR IMAGE... | --dir FOLDER        describe images with a caption run\n"
      "  codec encode|decode --run DIR --in F --out F     audio to a codec run's codes and back\n"
      "  check melodies --captions captions.jsonl         judge clips against their captions (analyser)\n"
      "  prepare text --tokenizer TOK --out DIR FILES...   turn text files into token shards\n"
      "  prepare shapes --size 32 --n N --out DIR        generate the captioned-shapes images\n"
      "  prepare melodies --n N --out DIR               generate the captioned-melodies clips\n"
      "  prepare midi --from DIR --soundfont SF2 --out D  render and caption MIDI files as clips\n"
      "  prepare images --from SOURCE --out DIR          write image-text pairs as WebDataset shards\n"
      "  tokenizer train --vocab-size N --out TOK FILES...  learn a byte-level BPE tokenizer\n"
      "  bench train CONFIG.ini [--steps N] [--key=value ...]  time training steps on random tokens\n"
      "  serve --run DIR [--port 8080] [--max-batch 8]    serve a run over HTTP (OpenAI-style API, a page at /)\n\n"
      "`fm COMMAND --help` lists a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp reads its barrier spin policy once, when it loads. Its default
  // (spinning ~300k iterations) starved the working threads on the 2-core
  // machines we measured (GPT step at 2 threads: 1337 tok/s, 2935 with a
  // short spin), so fm restarts itself once with a short spin unless the
  // user chose a policy.
  if (!std::getenv("GOMP_SPINCOUNT") && !std::getenv("OMP_WAIT_POLICY")) {
    setenv("GOMP_SPINCOUNT", "1000", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then run as we are
  }
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "train") return fm::app::cmd_train(args);
    if (cmd == "finetune") return fm::app::cmd_finetune(args);
    if (cmd == "generate") return fm::app::cmd_generate(args);
    if (cmd == "prepare") return fm::app::cmd_prepare(args);
    if (cmd == "tokenizer") return fm::app::cmd_tokenizer(args);
    if (cmd == "bench") return fm::app::cmd_bench(args);
    if (cmd == "eval") return fm::app::cmd_eval(args);
    if (cmd == "sweep") return fm::app::cmd_sweep(args);
    if (cmd == "scaling") return fm::app::cmd_scaling(args);
    if (cmd == "export") return fm::app::cmd_export(args);
    if (cmd == "import") return fm::app::cmd_import(args);
    if (cmd == "serve") {
#ifdef FM_HAVE_HTTPLIB
      return fm::app::cmd_serve(args);
#else
      fm::error("this build of fm cannot serve (install cpp-httplib: libcpp-httplib-dev, then configure again)");
#endif
    }
    if (cmd == "caption") {
#ifdef FM_HAVE_MEDIA
      return fm::app::cmd_caption(args);
#else
      fm::error("this build of fm has no image support (configure with -DLIBFM_MEDIA=ON)");
#endif
    }
    if (cmd == "codec") {
#ifdef FM_HAVE_MEDIA
      return fm::app::cmd_codec(args);
#else
      fm::error("this build of fm has no audio support (configure with -DLIBFM_MEDIA=ON)");
#endif
    }
    if (cmd == "check") {
#ifdef FM_HAVE_MEDIA
      return fm::app::cmd_check(args);
#else
      fm::error("this build of fm has no audio support (configure with -DLIBFM_MEDIA=ON)");
#endif
    }
    std::fprintf(stderr, "fm: unknown command '%s' (try fm --help)\n", cmd.c_str());
    return 2;
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "fm %s: %s\n", cmd.c_str(), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fm %s: %s\n", cmd.c_str(), e.what());
  }
  // One rank's fatal error ends the whole job now, rather than leaving the
  // other ranks to wait in a collective until their timeout.
  if (fm::dist::Communicator* w = fm::dist::active_world()) {
    std::fflush(stderr);
    w->abort(1);
  }
  return 1;
}

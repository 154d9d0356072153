// fm generate image ...: see media/cmd_generate_image.cpp
// fm generate text --run DIR --prompt TEXT [--max-new-tokens N] [--temperature T]
//                  [--top-k K] [--top-p P] [--seed S]
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "fm/fm.h"
#include "fm/io/checkpoint.h"
#include "options.h"
#include "fm/tasks/lm.h"
#ifdef FM_HAVE_MEDIA
#include "fm/tasks/image_text_data.h"
#include "fm/tasks/mixed.h"
#endif
#include "fm/tasks/sampling.h"
#include "fm/text/bpe.h"
#include "fm/train/recipe.h"
#include "fm/train/trainer.h"

namespace fm::app {
namespace {

// Where the first invalid UTF-8 sequence starts, or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (size_t k = 1; k < n; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;  // overlong, range, surrogate
    i += n;
  }
  return std::string_view::npos;
}

}  // namespace

int cmd_generate(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "image") {
#ifdef FM_HAVE_MEDIA
    return cmd_generate_image({args.begin() + 1, args.end()});
#else
    error("generate image: this build of fm has no image support (configure with -DLIBFM_MEDIA=ON)");
#endif
  }
  if (!args.empty() && args[0] == "music") {
#ifdef FM_HAVE_MEDIA
    return cmd_generate_music({args.begin() + 1, args.end()});
#else
    error("generate music: this build of fm has no audio support (configure with -DLIBFM_MEDIA=ON)");
#endif
  }
  Flags f("usage: fm generate text --run DIR --prompt TEXT [options]\n\n"
          "Continues the prompt with the newest checkpoint of a text run or a mixed run (KV-cached sampling).");
  f.option("run", "", "run directory made by fm train")
      .option("prompt", "\n", "text to continue (valid UTF-8)")
      .option("max-new-tokens", "200", "tokens to generate")
      .option("temperature", "0.8", "softmax temperature (0: greedy)")
      .option("top-k", "40", "sample among the k most likely tokens (0: all)")
      .option("top-p", "1.0", "nucleus sampling mass")
      .option("seed", "1", "sampling seed");
  if (!f.parse(args)) return 0;
  if (f.positional().size() != 1 || f.positional()[0] != "text")
    error("generate: expected the modality 'text', 'image' or 'music' (fm generate text|image|music --run DIR --prompt ...)");
  const std::string dir = f.get("run");
  if (dir.empty()) error("generate: --run DIR is required");
  const std::string prompt = f.get("prompt");
  if (const size_t bad = invalid_utf8_at(prompt); bad != std::string_view::npos)
    error("generate: --prompt is not valid UTF-8 (byte ", bad, ")");

  const train::Config config = train::load_run_config(dir);
  tasks::SamplingOptions o;
  o.max_new_tokens = f.get_int("max-new-tokens");
  o.temperature = f.get_double("temperature");
  o.top_k = f.get_int("top-k");
  o.top_p = f.get_double("top-p");
  if (o.top_p <= 0 || o.top_p > 1) error("generate: --top-p must be in (0, 1], got ", o.top_p);
  Generator gen(uint64_t(f.get_int("seed")));
  if (config.get_string("task.kind") == "mixed") {
#ifdef FM_HAVE_MEDIA
    // A mixed run's text: the prompt continued until the end-of-text.
    const tasks::MixedRun run = tasks::load_mixed_run(dir);
    o.stop_token = tasks::end_of_text_id(run.tokenizer);
    const std::vector<int32_t> ids = run.tokenizer.encode(prompt);
    std::vector<int32_t> out;
    for (int64_t t : tasks::mixed_generate_text(*run.model, std::vector<int64_t>(ids.begin(), ids.end()), o, gen))
      if (t != o.stop_token) out.push_back(int32_t(t));
    const std::string text = run.tokenizer.decode(out);
    std::printf("%s%s\n", prompt.c_str(), text.c_str());
    return 0;
#else
    error("generate text: mixed runs need a build with -DLIBFM_MEDIA=ON");
#endif
  }
  if (config.get_string("task.kind") != "lm")
    error("generate text: ", dir, " is a '", config.get_string("task.kind"), "' run, not an lm or mixed run");
  const std::string tok = config.get_string("data.tokenizer");
  if (tok.empty()) error("generate: the run's config names no data.tokenizer");
  const text::BpeTokenizer tokenizer = text::BpeTokenizer::load(tok);
  nn::GPT model(tasks::gpt_options(config));
  train::load_run_weights(dir, model);  // EMA weights where kept; a fine-tuning run's base + adapters
  model.eval();

  const std::vector<int32_t> ids = tokenizer.encode(prompt);
  const std::string text = tokenizer.decode(tasks::sample(model, ids, o, gen));
  std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::printf("\n");
  return 0;
}

}  // namespace fm::app

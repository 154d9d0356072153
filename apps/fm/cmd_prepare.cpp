// fm prepare text --tokenizer TOK --out DIR [--name N] [--val-fraction F] FILES...
// fm prepare shapes|images ...: see media/cmd_prepare_images.cpp
// fm prepare melodies ...: see media/cmd_prepare_melodies.cpp
// fm prepare midi ...: see media/cmd_prepare_midi.cpp
// fm tokenizer train --vocab-size N --out TOK FILES...
#include <chrono>
#include <cstdio>

#include "commands.h"
#include "fm/data/prepare_text.h"
#include "fm/error.h"
#include "fm/text/bpe.h"
#include "options.h"

namespace fm::app {

int cmd_prepare(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "shapes" || args[0] == "images")) {
#ifdef FM_HAVE_MEDIA
    return cmd_prepare_media(args);
#else
    error("prepare ", args[0], ": this build of fm has no image support (configure with -DLIBFM_MEDIA=ON)");
#endif
  }
  if (!args.empty() && args[0] == "melodies") {
#ifdef FM_HAVE_MEDIA
    return cmd_prepare_melodies(std::vector<std::string>(args.begin() + 1, args.end()));
#else
    error("prepare melodies: this build of fm has no audio support (configure with -DLIBFM_MEDIA=ON)");
#endif
  }
  if (!args.empty() && args[0] == "midi") {
#ifdef FM_HAVE_MEDIA
    return cmd_prepare_midi(std::vector<std::string>(args.begin() + 1, args.end()));
#else
    error("prepare midi: this build of fm has no audio support (configure with -DLIBFM_MEDIA=ON)");
#endif
  }
  Flags f("usage: fm prepare text --tokenizer TOK --out DIR [options] FILES...\n\n"
          "Encodes text files into llm.c/nanoGPT token shards (<name>_train_NNN.bin, <name>_val_000.bin).");
  f.option("tokenizer", "", "tokenizer file (fm tokenizer train)")
      .option("out", "", "output directory")
      .option("name", "text", "shard name prefix")
      .option("val-fraction", "0.1", "share of the documents (or tokens, for one file) kept for validation")
      .option("shard-tokens", "100000000", "tokens per training shard at most");
  if (!f.parse(args)) return 0;
  if (f.positional().empty() || f.positional()[0] != "text")
    error("prepare: expected text, shapes, images, melodies or midi (fm prepare text ...)");
  const std::vector<std::string> files(f.positional().begin() + 1, f.positional().end());
  if (files.empty()) error("prepare: no input files");
  if (f.get("tokenizer").empty() || f.get("out").empty()) error("prepare: --tokenizer and --out are required");
  const text::BpeTokenizer tok = text::BpeTokenizer::load(f.get("tokenizer"));
  const auto& special = tok.special_tokens();
  const auto eot = special.find("<|endoftext|>");
  const auto stats = data::prepare_text_shards(
      files,
      [&](std::string_view text) {
        const std::vector<int32_t> ids = tok.encode(text);
        return std::vector<uint32_t>(ids.begin(), ids.end());
      },
      eot == special.end() ? UINT32_MAX : uint32_t(eot->second), f.get("out"), f.get("name"),
      f.get_double("val-fraction"), f.get_int("shard-tokens"));
  std::printf("prepared %lld files (%.1f MB): %lld train tokens, %lld val tokens in %s\n", (long long)stats.files,
              double(stats.bytes) / 1e6, (long long)stats.train_tokens, (long long)stats.val_tokens,
              f.get("out").c_str());
  return 0;
}

int cmd_tokenizer(const std::vector<std::string>& args) {
  Flags f("usage: fm tokenizer train --vocab-size N --out TOK FILES...\n\n"
          "Learns a byte-level BPE tokenizer (GPT-2 pre-tokenisation) from text files.");
  f.option("vocab-size", "4096", "256 bytes + merges + special tokens").option("out", "", "tokenizer file to write");
  if (!f.parse(args)) return 0;
  if (f.positional().empty() || f.positional()[0] != "train") error("tokenizer: expected 'train'");
  const std::vector<std::string> files(f.positional().begin() + 1, f.positional().end());
  if (files.empty()) error("tokenizer: no input files");
  if (f.get("out").empty()) error("tokenizer: --out is required");
  text::BpeTrainOptions o;
  o.vocab_size = int32_t(f.get_int("vocab-size"));
  o.special_tokens = {"<|endoftext|>"};
  const auto t0 = std::chrono::steady_clock::now();
  const text::BpeTokenizer tok = text::BpeTokenizer::train_files(files, o);
  tok.save(f.get("out"));
  std::printf("tokenizer: %d tokens learnt from %zu files in %.1f s -> %s\n", tok.vocab_size(), files.size(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), f.get("out").c_str());
  return 0;
}

}  // namespace fm::app

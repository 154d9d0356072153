#pragma once
// The `mixed` kind's generation and runs (fm generate image|text, fm caption,
// fm eval on a mixed run): one MixedModel switches between sampling tokens
// and running a diffusion sampler when an image segment begins.
//   caption an image:   [BOI] image (clean) [EOI] -> tokens until end-of-text
//   draw a caption:     [caption, BOI] -> an image segment, denoised by any
//                       sampler, with classifier-free guidance against [BOI]
//   describe a clip:    [BOA] codec steps [EOA] -> tokens until end-of-text
//   play a caption:     [caption, BOA] -> codec steps (delay pattern), sampled
//                       with guidance against [BOA]
//   continue text:      [prompt] -> tokens
#include <memory>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/objectives/diffusion.h"
#include "fm/tasks/codec_model.h"
#include "fm/tasks/decoding.h"
#include "fm/tasks/mixed_model.h"
#include "fm/tasks/music_model.h"
#include "fm/tasks/sampling.h"
#include "fm/tasks/text2image.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::tasks {

MixedOptions mixed_options(const train::Config& c);

// Captions of images [N, C, H, W] (the model's data range): token ids
// without the end-of-text. Runs under no_grad.
std::vector<Decoded> mixed_caption_images(const MixedModel& m, const Tensor& images, int64_t end_of_text,
                                          const DecodeOptions& o, Generator* gen = nullptr);

// Captions of audio codes [N, K, F]: [BOA] delayed steps [EOA] -> tokens.
std::vector<Decoded> mixed_caption_codes(const MixedModel& m, const Tensor& codes, int64_t end_of_text,
                                         const DecodeOptions& o, Generator* gen = nullptr);

// Codes [N, K, frames] for captions (token ids, end-of-text included):
// [caption BOA] then the delayed steps, each codebook sampled (top-k or
// top-p at a temperature) where its stream holds a frame, with
// classifier-free guidance on the logits against [BOA] alone.
Tensor mixed_generate_codes(const MixedModel& m, const std::vector<std::vector<int64_t>>& captions, int64_t frames,
                            const MusicSampling& s, Generator& gen);

// Images [N, C, H, W] (the model's data range) for captions (token ids,
// end-of-text included), from N(0, 1) noise drawn from gen. With cfg != 1
// every model call runs the conditional rows and the unconditional ones
// ([BOI] alone) in one batch and mixes them u + cfg (c - u).
Tensor mixed_generate_images(const MixedModel& m, const std::vector<std::vector<int64_t>>& captions,
                             objectives::Sampler& sampler, int64_t steps, double cfg, Generator& gen);

// Continues a text prompt (token ids) by up to o.max_new_tokens tokens.
std::vector<int64_t> mixed_generate_text(const MixedModel& m, const std::vector<int64_t>& prompt,
                                         const SamplingOptions& o, Generator& gen);

// A trained run: config, newest weights (EMA ones when kept), tokenizer,
// the evaluation image transform and the recipe's decoding options.
struct MixedRun {
  train::Config config;
  std::unique_ptr<MixedModel> model;
  text::BpeTokenizer tokenizer;
  data::Transform transform;  // sample -> {"image": [C, S, S]} as evaluation reads it
  DecodeOptions decode;
  std::unique_ptr<Codec> codec;  // model.codec's, when the run has audio segments
  MusicSampling sampling;        // the run's sample.* keys
  int64_t step = 0;
  // Prompts -> images [N, C, H, W] in [0, 1]. Prompts longer than the
  // caption context are an error unless `truncated` is given (then cut and
  // counted, as training cuts them).
  Tensor generate_images(const std::vector<std::string>& prompts, const GenerateOptions& o,
                         int64_t* truncated = nullptr) const;
  // Image files -> captions, in order.
  Tensor load_image(const std::string& path) const;
  std::vector<std::string> caption(const Tensor& images, const DecodeOptions& o, Generator* gen = nullptr) const;
  // Captions -> waveforms [T] at the codec's rate, `seconds` long (in (0,
  // max_seconds()]). Errors when the run has no audio segments.
  std::vector<Tensor> play(const std::vector<std::string>& captions, double seconds, Generator& gen) const;
  double max_seconds() const;
};
// Errors name the run when it is not a mixed run or has no checkpoint.
MixedRun load_mixed_run(const std::string& run_dir, Device device = Device::cpu());

}  // namespace fm::tasks

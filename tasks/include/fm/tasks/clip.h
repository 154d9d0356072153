#pragma once
// The `clip` kind's pieces for programs that use a trained run: the model
// options a config gives, loading a run, and the evaluations (zero-shot
// classification with prompt templates, image-text retrieval).
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/tasks/clip_model.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::tasks {

CLIPOptions clip_options(const train::Config& c);

// The text tower's keys, shared by the kinds with CLIP's text tower (clip,
// clap): model.vocab_size, context_length, text_width, text_layers,
// text_heads, embed_dim, shared_core, loss (clip or siglip) and
// data.tokenizer; the options they give; and model.vocab_size = 0 resolved
// to the tokenizer's vocabulary.
void declare_text_tower_keys(train::Config& c);
TextTowerOptions text_tower_options(const train::Config& c);
void resolve_text_vocab(train::Config& c);

// Class names through every template ("a photo of a {}.") -> one L2-normalised
// text feature per class, the mean over templates (CLIP's prompt ensembling): [K, E].
Tensor class_text_features(const ContrastiveModel& model, const std::vector<std::string>& classes,
                           const std::vector<std::string>& templates, const text::BpeTokenizer& tokenizer,
                           Device device);
// The same from each class's own prompts (prompts[k]: class k's, at least one).
Tensor class_text_features(const ContrastiveModel& model, const std::vector<std::vector<std::string>>& prompts,
                           const text::BpeTokenizer& tokenizer, Device device);

// Top-1 accuracy over the first `limit` samples of `source` (0: all), whose
// labels index `classes`.
double zero_shot_accuracy(const CLIP& model, const data::ImageTextSource& source, const data::Transform& transform,
                          const std::vector<std::string>& classes, const std::vector<std::string>& templates,
                          const text::BpeTokenizer& tokenizer, int64_t batch_size, int64_t limit, Device device);

// A linear probe (CLIP paper, section 3.2): a softmax classifier trained on
// the frozen, standardised image features of the first `train_limit`
// samples of `train` (0: all), then its top-1 accuracy on the first
// `test_limit` of `test`. Full-batch AdamW, 300 steps, a little weight decay:
// a fixed recipe, so probes of different runs compare.
double linear_probe_accuracy(const CLIP& model, const data::ImageTextSource& train, const data::ImageTextSource& test,
                             const data::Transform& transform, int64_t classes, int64_t batch_size,
                             int64_t train_limit, int64_t test_limit, Device device);

// Recall at 1, 5 and 10 both ways from the scores [N, N] of N pairs (row i:
// item i of the first kind against every item of the second): "{a}2{b}_r1",
// ..., "{b}2{a}_r10". Item i finds its own partner when fewer than k others
// score strictly higher (ties count for it).
std::map<std::string, double> recall_at_k(const Tensor& scores, const std::string& a, const std::string& b);

// Image-to-text and text-to-image recall at 1, 5 and 10 over the first
// `limit` pairs (0: all): "i2t_r1", ..., "t2i_r10". Pair i's image finds its
// own caption when fewer than k captions score higher.
std::map<std::string, double> retrieval(const CLIP& model, const data::ImageTextSource& source,
                                        const data::Transform& transform, int64_t batch_size, int64_t limit,
                                        Device device);

// A trained run: its config, its newest checkpoint's weights (EMA ones when
// saved), tokenizer and evaluation transform. For programs like zero_shot.
struct ClipRun {
  train::Config config;
  std::unique_ptr<CLIP> model;
  text::BpeTokenizer tokenizer;
  data::Transform transform;
};
ClipRun load_clip_run(const std::string& run_dir);

}  // namespace fm::tasks

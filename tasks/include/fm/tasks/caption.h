#pragma once
// The `caption` kind's pieces for programs that use a trained run (fm
// caption, apps/examples/caption.cpp): the options a config gives,
// captioning a batch of images, loading a run, and the shapes data set's
// exact-match rule.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/loader.h"
#include "fm/tasks/caption_model.h"
#include "fm/tasks/decoding.h"
#include "fm/text/bpe.h"
#include "fm/train/config.h"

namespace fm::tasks {

CaptionOptions caption_options(const train::Config& c);
// The decode.* keys (beam search and sampling), and their values
// (decode.max_tokens 0: the model's context_length - 1).
void declare_decode_keys(train::Config& c);
DecodeOptions decode_options(const train::Config& c, const CaptionOptions& model);
DecodeOptions decode_options(const train::Config& c, int64_t context_length);

// A model's decoding rows: batch * beam copies of each image's encoding, with
// one KV cache per layer; the cross-attention keys and values of the image
// are computed at the first step and reused at every later one.
class CaptionTokenSource : public TokenSource {
 public:
  CaptionTokenSource(const CaptionModel& model, const Tensor& images, int64_t beam);
  Tensor next(const std::vector<int32_t>& tokens) override;
  void select(const std::vector<int64_t>& rows) override;

 private:
  const CaptionModel& model_;
  Tensor image_;  // [B * beam, ...] until the first step, then released
  std::vector<nn::KVCache> caches_;
};

// Captions of images [B, C, H, W] (normalised as in training): one Decoded
// per image, token ids without the end-of-text. Runs under no_grad.
std::vector<Decoded> caption_images(const CaptionModel& model, const Tensor& images, int32_t end_of_text,
                                    const DecodeOptions& o, Generator* gen = nullptr);

// Shapes captions name the same thing: equal, or two-shape captions that
// state one relation from either shape ("a red circle above a blue square" ==
// "a blue square below a red circle"). Text outside the grammar only matches
// itself.
bool same_shapes_caption(const std::string& a, const std::string& b);

// Corpus metrics (BLEU-1..4, ROUGE-L, CIDEr-D) of `generated`, the captions
// decoded for samples `indices` of `source` (references: every caption of
// the same image among them). With checker "shapes", the exact-match rates
// ("exact", "_one", "_two", "_heldout": naming a held-out colour-type pair,
// "_one_seen", "_two_seen": naming none) and how often each word of a
// one-shape caption is right ("one_colour", ...); with "melodies", exact
// match and each attribute's rate ("melody_key", ...).
void caption_figures(const std::string& checker, const data::ImageTextSource& source, const std::vector<int64_t>& indices,
                     const std::vector<std::string>& generated, std::map<std::string, double>& out);

// A trained run: config, newest weights (EMA ones when kept), tokenizer, the
// evaluation transform (image only: the sample's "image" tensor) and the
// recipe's decoding options.
struct CaptionRun {
  train::Config config;
  std::unique_ptr<CaptionModel> model;
  text::BpeTokenizer tokenizer;
  data::Transform transform;
  DecodeOptions decode;
  // An image file as the model reads it, [C, S, S]. Errors name the file and
  // say why (unreadable, not an image, audio given to an image captioner).
  Tensor load_image(const std::string& path) const;
  // Captions of image files, in order (tokens decoded to text).
  std::vector<std::string> caption_files(const std::vector<std::string>& paths, Generator* gen = nullptr) const;
};
CaptionRun load_caption_run(const std::string& run_dir);

}  // namespace fm::tasks

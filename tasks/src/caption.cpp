// The caption kind's pieces that need no media libraries: options from a
// config, decoding a batch of images, the shapes exact-match rule.
#include <algorithm>

#include "fm/autograd.h"
#include "fm/data/shapes_checker.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/caption.h"

#include <cmath>

namespace fm::tasks {

CaptionOptions caption_options(const train::Config& c) {
  CaptionOptions o;
  o.layout = c.get_string("model.layout");
  o.image_size = c.get_int("model.image_size");
  o.patch_size = c.get_int("model.patch_size");
  o.channels = c.get_int("model.channels");
  o.vision_width = c.get_int("model.vision_width");
  o.vision_layers = c.get_int("model.vision_layers");
  o.vision_heads = c.get_int("model.vision_heads");
  o.cls_token = c.get_bool("model.cls_token");
  o.vocab_size = c.get_int("model.vocab_size");
  o.context_length = c.get_int("model.context_length");
  o.text_width = c.get_int("model.text_width");
  o.text_layers = c.get_int("model.text_layers");
  o.text_heads = c.get_int("model.text_heads");
  o.coca = c.get_bool("model.coca");
  o.unimodal_layers = c.get_int("model.unimodal_layers");
  o.embed_dim = c.get_int("model.embed_dim");
  o.freeze_image_tower = c.get_bool("model.freeze_image_encoder");
  o.modality = c.get_string("model.modality");
  o.sample_rate = c.get_int("model.sample_rate");
  o.clip_samples = int64_t(std::lround(c.get_double("model.clip_seconds") * double(o.sample_rate)));
  o.n_fft = c.get_int("model.n_fft");
  o.hop = c.get_int("model.hop");
  o.n_mels = c.get_int("model.n_mels");
  o.patch_freq = c.get_int("model.patch_freq");
  o.patch_time = c.get_int("model.patch_time");
  return o;
}

void declare_decode_keys(train::Config& c) {
  c.add_int("decode.beam", 3, "beam width for evaluation and fm caption (1: greedy)")
      .add_int("decode.max_tokens", 0, "tokens generated at most (0: context_length - 1)")
      .add_double("decode.length_penalty", 1.0, "beam scores: log-prob sum / length^length_penalty")
      .add_int("decode.no_repeat_ngram", 0, "no n-gram of this size twice in a caption (0: off)")
      .add_bool("decode.early_stopping", true, "beam: stop once `beam` captions have ended")
      .add_bool("decode.sample", false, "draw tokens (top-k / top-p) instead of searching (beam 1)")
      .add_double("decode.temperature", 1.0, "sampling temperature")
      .add_int("decode.top_k", 0, "sampling: the k most likely tokens only (0: all)")
      .add_double("decode.top_p", 1.0, "sampling: nucleus mass");
}

DecodeOptions decode_options(const train::Config& c, const CaptionOptions& model) {
  return decode_options(c, model.context_length);
}

DecodeOptions decode_options(const train::Config& c, int64_t context_length) {
  DecodeOptions o;
  o.beam = c.get_int("decode.beam");
  o.max_tokens = c.get_int("decode.max_tokens");
  if (o.max_tokens == 0) o.max_tokens = context_length - 1;
  o.length_penalty = c.get_double("decode.length_penalty");
  o.no_repeat_ngram = c.get_int("decode.no_repeat_ngram");
  o.early_stopping = c.get_bool("decode.early_stopping");
  o.sample = c.get_bool("decode.sample");
  o.temperature = c.get_double("decode.temperature");
  o.top_k = c.get_int("decode.top_k");
  o.top_p = c.get_double("decode.top_p");
  if (o.beam < 1) error("config: key 'decode.beam': must be at least 1, got ", o.beam);
  if (o.max_tokens < 1 || o.max_tokens > context_length - 1)
    error("config: key 'decode.max_tokens': must be 1 to context_length - 1 = ", context_length - 1, ", got ", o.max_tokens);
  return o;
}

CaptionTokenSource::CaptionTokenSource(const CaptionModel& model, const Tensor& images, int64_t beam) : model_(model) {
  const Tensor image = model.encode_image(images);
  const int64_t B = image.size(0);
  // Row b * beam + j is beam j of image b.
  Tensor rows = arange(0.0, double(B * beam), 1.0, TensorOptions(DType::i64)) / beam;
  image_ = beam == 1 ? image : index_select(image, 0, rows.to(DType::i64).to(image.device()));
}

Tensor CaptionTokenSource::next(const std::vector<int32_t>& tokens) {
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  const Device device = model_.token_embedding->weight.device();
  Tensor logits = model_.logits(image_, tensor(ids, {int64_t(ids.size()), 1}).to(device), &caches_);
  image_ = Tensor();  // now in the caches: the cross-attention keys and values, or the image segment
  return logits.select(1, 0);
}

void CaptionTokenSource::select(const std::vector<int64_t>& rows) {
  bool identity = true;
  for (size_t i = 0; i < rows.size(); ++i) identity = identity && rows[i] == int64_t(i);
  if (identity) return;
  nn::select_cache_rows(caches_, tensor(rows, {int64_t(rows.size())}).to(model_.token_embedding->weight.device()));
}

std::vector<Decoded> caption_images(const CaptionModel& model, const Tensor& images, int32_t end_of_text,
                                    const DecodeOptions& o, Generator* gen) {
  NoGradGuard ng;
  CaptionTokenSource source(model, images, o.beam);
  return decode(source, images.size(0), end_of_text, end_of_text, o, gen);
}

namespace {

std::string shape_words(const data::CaptionShape& s) { return s.size + " " + s.colour + " " + s.type; }

const char* inverse_relation(const std::string& r) {
  if (r == "above") return "below";
  if (r == "below") return "above";
  if (r == "to the left of") return "to the right of";
  return "to the left of";
}

}  // namespace

bool same_shapes_caption(const std::string& a, const std::string& b) {
  if (a == b) return true;
  try {
    const data::ParsedCaption pa = data::parse_shapes_caption(a), pb = data::parse_shapes_caption(b);
    if (pa.shapes.size() != 2 || pb.shapes.size() != 2) return false;
    return shape_words(pa.shapes[0]) == shape_words(pb.shapes[1]) && shape_words(pa.shapes[1]) == shape_words(pb.shapes[0]) &&
           pb.relation == inverse_relation(pa.relation);
  } catch (const Error&) {
    return false;  // outside the grammar: only equal text matches
  }
}

}  // namespace fm::tasks

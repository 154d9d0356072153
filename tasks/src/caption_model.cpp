#include "fm/tasks/caption_model.h"

#include <cmath>
#include <optional>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/objectives/contrastive.h"
#include "fm/ops.h"
#include "fm/tasks/clip_model.h"

namespace fm::tasks {
namespace {

std::shared_ptr<nn::Transformer> make_core(int64_t width, int64_t layers, int64_t heads, int64_t context_dim = 0) {
  nn::BlockOptions b;
  b.d_model = width;
  b.n_head = heads;
  b.cross_attention = context_dim > 0;
  b.context_dim = context_dim;
  return std::make_shared<nn::Transformer>(nn::TransformerOptions{b, layers});
}

// Runs t over x with caches[from, from + t's layers) (or none).
Tensor run_cached(const nn::Transformer& t, const Tensor& x, const nn::BlockInputs& in,
                  std::vector<nn::KVCache>* caches, size_t from) {
  if (!caches) return t.forward(x, in);
  const size_t n = t.blocks->size();
  std::vector<nn::KVCache> mine(caches->begin() + from, caches->begin() + from + n);
  Tensor y = t.forward(x, in, &mine);
  std::move(mine.begin(), mine.end(), caches->begin() + from);
  return y;
}

}  // namespace

Tensor prefix_causal_mask(int64_t n_image, int64_t n_text, Device device) {
  const int64_t n = n_image + n_text;
  Tensor q = arange(0.0, double(n), 1.0, TensorOptions(DType::i64)).unsqueeze(1);
  Tensor k = arange(0.0, double(n), 1.0, TensorOptions(DType::i64)).unsqueeze(0);
  // Key k is visible to query q when it is an image token or not after q: k <= max(q, n_image - 1).
  Tensor visible = le(k, maximum(q, full({1, 1}, double(n_image - 1), DType::i64)));
  return visible.to(device);
}

CaptionModel::CaptionModel(const CaptionOptions& o, Generator* gen) : options(o) {
  if (o.vocab_size <= 0) error("CaptionModel: vocab_size must be > 0, got ", o.vocab_size);
  if (o.layout != "cross" && o.layout != "single")
    error("CaptionModel: layout must be 'cross' or 'single', got '", o.layout, "'");
  const bool single = o.layout == "single";
  if (o.coca && single) error("CaptionModel: coca needs the cross layout");
  if (o.freeze_image_tower && single) error("CaptionModel: freeze_image_tower needs the cross layout");
  if (o.coca && (o.unimodal_layers <= 0 || o.unimodal_layers >= o.text_layers))
    error("CaptionModel: coca needs 0 < unimodal_layers < text_layers, got ", o.unimodal_layers, " of ", o.text_layers);
  if (o.modality == "image") {
    image::PatchEmbeddingOptions pe;
    pe.image_size = o.image_size;
    pe.patch_size = o.patch_size;
    pe.channels = o.channels;
    pe.d_model = single ? o.text_width : o.vision_width;
    pe.cls_token = o.cls_token;
    patch_embed = register_module("patch_embed", std::make_shared<image::PatchEmbedding>(pe, gen));
  } else if (o.modality == "audio") {
    audio::LogMelFeatures log_mel;
    log_mel.mel.sample_rate = int(o.sample_rate);
    log_mel.mel.stft.n_fft = o.n_fft;
    log_mel.mel.stft.hop_length = o.hop;
    log_mel.mel.n_mels = o.n_mels;
    log_mel.mean = -6.0, log_mel.std = 4.0;  // log(mel + 1e-6) of clips near full scale spans about [-14, 2]
    features = audio::ClipFeatures(log_mel, o.clip_samples, o.patch_time, "CaptionModel");
    audio::SpectrogramEmbeddingOptions se;
    se.n_mels = o.n_mels;
    se.patch_freq = o.patch_freq;
    se.patch_time = o.patch_time;
    se.frames = features.frames;
    se.d_model = single ? o.text_width : o.vision_width;
    se.cls_token = o.cls_token;
    spec_embed = register_module("spec_embed", std::make_shared<audio::SpectrogramEmbedding>(se, gen));
  } else {
    error("CaptionModel: modality must be 'image' or 'audio', got '", o.modality, "'");
  }
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size, o.text_width}));
  positional_embedding = register_module(
      "positional_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.context_length, o.text_width}));
  if (single) {
    core = register_module("core", make_core(o.text_width, o.text_layers, o.text_heads));
    nn::init_gpt2(*core, gen);
  } else {
    visual = register_module("visual", make_core(o.vision_width, o.vision_layers, o.vision_heads));
    const int64_t cross_layers = o.text_layers - (o.coca ? o.unimodal_layers : 0);
    if (o.coca) unimodal = register_module("unimodal", make_core(o.text_width, o.unimodal_layers, o.text_heads));
    decoder = register_module("decoder", make_core(o.text_width, cross_layers, o.text_heads, o.vision_width));
    nn::init_gpt2(*visual, gen);
    if (unimodal) nn::init_gpt2(*unimodal, gen);
    nn::init_gpt2(*decoder, gen);
  }
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
  if (o.coca) {
    visual_proj = register_module("visual_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.vision_width, o.embed_dim, false}));
    text_proj = register_module("text_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.text_width, o.embed_dim, false}));
    nn::init::normal_(visual_proj->weight, 0.0, 1.0 / std::sqrt(double(o.vision_width)), gen);
    nn::init::normal_(text_proj->weight, 0.0, 1.0 / std::sqrt(double(o.text_width)), gen);
    logit_scale = register_parameter("logit_scale", full({}, objectives::kClipLogitScaleInit), nn::kNoDecay);
  }
}

Tensor CaptionModel::embed_text(const Tensor& ids, int64_t start) const {
  if (ids.dim() != 2) error("CaptionModel: ids must be [B, T], got ", ids.shape());
  const int64_t T = ids.size(1);
  if (start + T > options.context_length)
    error("CaptionModel: ", start + T, " caption positions exceed context_length ", options.context_length);
  Tensor pos = arange(double(start), double(start + T), 1.0, TensorOptions(DType::i64).device(ids.device()));
  return token_embedding->forward(ids) + positional_embedding->forward(pos);
}

Tensor CaptionModel::head(const Tensor& h) const { return linear(h, token_embedding->weight); }

int64_t CaptionModel::image_tokens() const {
  return (patch_embed ? patch_embed->num_patches() : spec_embed->num_patches()) + (options.cls_token ? 1 : 0);
}

Tensor CaptionModel::encode_image(const Tensor& images) const {
  std::optional<NoGradGuard> frozen;
  if (options.freeze_image_tower) frozen.emplace();
  Tensor patches;
  if (patch_embed) {
    patches = patch_embed->forward(images);
  } else {
    patches = spec_embed->forward(features(images, "CaptionModel"));
  }
  return core ? patches : visual->forward(patches);  // cross: bidirectional encoder, final norm on every token
}

Tensor CaptionModel::logits(const Tensor& image, const Tensor& ids, std::vector<nn::KVCache>* caches) const {
  if (caches && caches->empty()) caches->resize(core ? core->blocks->size() : (unimodal ? unimodal->blocks->size() : 0) + decoder->blocks->size());
  const int64_t cached = caches ? (*caches)[0].length() : 0;
  nn::BlockInputs in;
  if (core) {
    const int64_t N = image_tokens(), T = ids.size(1);
    if (cached == 0) {  // the image segment and the first caption tokens, under the prefix mask
      if (!image.defined()) error("CaptionModel: the first call needs the image");
      in.mask = prefix_causal_mask(N, T, ids.device());
      Tensor h = run_cached(*core, cat({image, embed_text(ids, 0)}, 1), in, caches, 0);
      return head(h.narrow(1, N, T));
    }
    in.causal = true;  // later tokens see the whole cache and each other causally
    return head(run_cached(*core, embed_text(ids, cached - N), in, caches, 0));
  }
  in.causal = true;
  Tensor x = embed_text(ids, cached);
  size_t from = 0;
  if (unimodal) {
    x = run_cached(*unimodal, x, in, caches, 0);
    from = unimodal->blocks->size();
  }
  if (!image.defined() && (!caches || !(*caches)[from].cross_k.defined()))
    error("CaptionModel: the first call needs the image");
  in.context = image;
  return head(run_cached(*decoder, x, in, caches, from));
}

CaptionForward CaptionModel::forward(const Tensor& images, const Tensor& ids, const Tensor& last) const {
  CaptionForward out;
  const Tensor image = encode_image(images);
  if (!options.coca) {
    out.logits = logits(image, ids);
    return out;
  }
  if (!last.defined() || last.dim() != 1 || last.size(0) != ids.size(0))
    error("CaptionModel: CoCa needs the last caption position of each row, [B]",
          last.defined() ? ", got " + last.shape().str() : std::string());
  nn::BlockInputs in;
  in.causal = true;
  Tensor text = unimodal->forward(embed_text(ids, 0), in);
  in.context = image;
  out.logits = head(decoder->forward(text, in));
  const int64_t B = ids.size(0), T = ids.size(1);
  Tensor rows = arange(0.0, double(B * T), double(T), TensorOptions(DType::i64).device(ids.device())) + last.to(DType::i64);
  out.text_emb = l2_normalize(text_proj->forward(index_select(text.reshape({B * T, text.size(2)}), 0, rows)));
  out.image_emb = l2_normalize(visual_proj->forward(options.cls_token ? image.select(1, 0) : mean(image, {1})));
  return out;
}

}  // namespace fm::tasks

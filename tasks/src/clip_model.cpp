#include "fm/tasks/clip_model.h"

#include <cmath>

#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/objectives/contrastive.h"
#include "fm/ops.h"

namespace fm::tasks {
namespace {

std::shared_ptr<nn::Transformer> make_core(int64_t width, int64_t layers, int64_t heads) {
  nn::BlockOptions b;
  b.d_model = width;
  b.n_head = heads;
  return std::make_shared<nn::Transformer>(nn::TransformerOptions{b, layers});
}

}  // namespace

Tensor l2_normalize(const Tensor& x, double eps) {
  return x / clamp_min(sqrt(sum(square(x), {-1}, true)), eps);
}

CLIP::CLIP(const CLIPOptions& o, Generator* gen) : options(o) {
  if (o.vocab_size <= 0) error("CLIP: vocab_size must be > 0, got ", o.vocab_size);
  if (o.pool != "cls" && o.pool != "mean") error("CLIP: pool must be 'cls' or 'mean', got '", o.pool, "'");
  if (o.shared_core && (o.vision_width != o.text_width || o.vision_layers != o.text_layers || o.vision_heads != o.text_heads))
    error("CLIP: shared_core needs equal widths, layers and heads in both towers");
  image::PatchEmbeddingOptions pe;
  pe.image_size = o.image_size;
  pe.patch_size = o.patch_size;
  pe.channels = o.channels;
  pe.d_model = o.vision_width;
  pe.cls_token = o.pool == "cls";
  patch_embed = register_module("patch_embed", std::make_shared<image::PatchEmbedding>(pe, gen));
  visual = register_module("visual", make_core(o.vision_width, o.vision_layers, o.vision_heads));
  visual_proj = register_module("visual_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.vision_width, o.embed_dim, false}));
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.vocab_size, o.text_width}));
  positional_embedding = register_module(
      "positional_embedding", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{o.context_length, o.text_width}));
  if (!o.shared_core) text = register_module("text", make_core(o.text_width, o.text_layers, o.text_heads));
  text_proj = register_module("text_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.text_width, o.embed_dim, false}));
  // CLIP starts at ln(1/0.07); SigLIP at ln 10 with a bias of -10.
  const double scale = o.logit_bias ? objectives::kSiglipLogitScaleInit : objectives::kClipLogitScaleInit;
  logit_scale = register_parameter("logit_scale", full({}, scale), nn::kNoDecay);
  if (o.logit_bias) logit_bias = register_parameter("logit_bias", full({}, objectives::kSiglipLogitBiasInit), nn::kNoDecay);
  // open_clip's scales: embeddings 0.02 / 0.01, projections width^-0.5.
  nn::init_gpt2(*visual, gen);
  if (text) nn::init_gpt2(*text, gen);
  nn::init::normal_(token_embedding->weight, 0.0, 0.02, gen);
  nn::init::normal_(positional_embedding->weight, 0.0, 0.01, gen);
  nn::init::normal_(visual_proj->weight, 0.0, 1.0 / std::sqrt(double(o.vision_width)), gen);
  nn::init::normal_(text_proj->weight, 0.0, 1.0 / std::sqrt(double(o.text_width)), gen);
}

Tensor CLIP::encode_image(const Tensor& images) const {
  Tensor h = visual->forward(patch_embed->forward(images));  // bidirectional; final norm on every token
  Tensor pooled = options.pool == "cls" ? h.select(1, 0) : mean(h, {1});
  return l2_normalize(visual_proj->forward(pooled));
}

Tensor CLIP::text_tokens(const Tensor& ids) const {
  if (ids.dim() != 2) error("CLIP.text_tokens: ids must be [B, L], got ", ids.shape());
  const int64_t L = ids.size(1);
  if (L > options.context_length) error("CLIP: ", L, " tokens exceed context_length ", options.context_length);
  Tensor pos = arange(0.0, double(L), 1.0, TensorOptions(DType::i64).device(ids.device()));
  nn::BlockInputs in;
  in.causal = true;
  return (text ? text : visual)->forward(token_embedding->forward(ids) + positional_embedding->forward(pos), in);
}

Tensor CLIP::pool_text(const Tensor& h, const Tensor& eot) const {
  const int64_t B = h.size(0), L = h.size(1);
  // Row b's features at position eot[b]: flat index b * L + eot[b].
  Tensor rows = arange(0.0, double(B * L), double(L), TensorOptions(DType::i64).device(h.device())) + eot.to(DType::i64);
  return l2_normalize(text_proj->forward(index_select(h.reshape({B * L, h.size(2)}), 0, rows)));
}

Tensor CLIP::encode_text(const Tensor& ids, const Tensor& eot) const {
  if (ids.dim() != 2 || eot.dim() != 1 || eot.size(0) != ids.size(0))
    error("CLIP.encode_text: ids must be [B, L] and eot [B], got ", ids.shape(), " and ", eot.shape());
  return pool_text(text_tokens(ids), eot);
}

}  // namespace fm::tasks

#pragma once
// CLIP (Radford et al. 2021; open_clip's layout) on the shared core: an
// image tower (ViT: patch embedding, class token, learned positions, a
// bidirectional Transformer, CLS or mean pooling), a text tower (token and
// position embeddings, a causal Transformer, the features at the
// end-of-text token), linear projections into one embedding space, and a
// learnable logit scale (and bias, for the sigmoid loss). With shared_core
// both towers run the same Transformer and differ only in their adapters.
#include <memory>
#include <string>

#include "fm/image/patch_embedding.h"
#include "fm/nn/transformer.h"

namespace fm::tasks {

struct CLIPOptions {
  // image tower
  int64_t image_size = 32, patch_size = 4, channels = 3;
  int64_t vision_width = 128, vision_layers = 4, vision_heads = 4;
  std::string pool = "cls";  // "cls" or "mean"
  // text tower
  int64_t vocab_size = 0, context_length = 32;
  int64_t text_width = 128, text_layers = 4, text_heads = 4;
  int64_t embed_dim = 128;
  bool shared_core = false;  // one Transformer for both towers (widths, depths and heads equal)
  bool logit_bias = false;   // SigLIP's learnable bias
};

class CLIP : public nn::Module {
 public:
  explicit CLIP(const CLIPOptions& o, Generator* init_gen = nullptr);
  // images [B, C, H, W] f32 -> L2-normalised features [B, embed_dim].
  Tensor encode_image(const Tensor& images) const;
  // ids [B, L] integer, eot [B] integer (the end-of-text position of each
  // row) -> L2-normalised features [B, embed_dim].
  Tensor encode_text(const Tensor& ids, const Tensor& eot) const;
  // The text tower's final features of every token, [B, L, text_width]
  // (before pooling and projection): what a text-to-image model reads.
  Tensor text_tokens(const Tensor& ids) const;
  // text_tokens' output at each row's end-of-text, projected and normalised:
  // encode_text(ids, eot) == pool_text(text_tokens(ids), eot).
  Tensor pool_text(const Tensor& tokens, const Tensor& eot) const;

  CLIPOptions options;
  std::shared_ptr<image::PatchEmbedding> patch_embed;
  std::shared_ptr<nn::Transformer> visual;  // also the text tower's core when shared
  std::shared_ptr<nn::Linear> visual_proj;
  std::shared_ptr<nn::Embedding> token_embedding, positional_embedding;
  std::shared_ptr<nn::Transformer> text;    // null when shared_core
  std::shared_ptr<nn::Linear> text_proj;
  Tensor logit_scale;  // 0-dim, log of the scale
  Tensor logit_bias;   // 0-dim (logit_bias option only)
};

// Features / their L2 norm along the last dimension.
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

}  // namespace fm::tasks

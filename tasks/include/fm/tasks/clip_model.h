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
#include "fm/tasks/contrastive_model.h"

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

// The text tower, logit scale and loss are ContrastiveModel's
// (encode_text, text_tokens, pool_text, loss).
class CLIP : public ContrastiveModel {
 public:
  explicit CLIP(const CLIPOptions& o, Generator* init_gen = nullptr);
  // images [B, C, H, W] f32 -> L2-normalised features [B, embed_dim].
  Tensor encode_image(const Tensor& images) const;

  CLIPOptions options;
  std::shared_ptr<image::PatchEmbedding> patch_embed;
  std::shared_ptr<nn::Transformer> visual;  // also the text tower's core when shared
  std::shared_ptr<nn::Linear> visual_proj;
};

}  // namespace fm::tasks

#pragma once
// The ViT patch adapter (DESIGN.md): images [B, C, H, W] -> patch
// embeddings [B, N (+1), d_model] for the shared Transformer. Each p x p
// patch (patchify's (py, px, c) order) goes through one Linear, the same map
// as ViT's stride-p convolution; an optional class token is prepended and
// learned positions added.
#include "fm/nn/layers.h"
#include "fm/random.h"

namespace fm::image {

struct PatchEmbeddingOptions {
  int64_t image_size = 32, patch_size = 4, channels = 3;
  int64_t d_model = 128;
  bool cls_token = true;
};

class PatchEmbedding : public nn::Module {
 public:
  explicit PatchEmbedding(const PatchEmbeddingOptions& o, Generator* init_gen = nullptr);
  Tensor forward(const Tensor& images) const;
  int64_t num_patches() const;
  PatchEmbeddingOptions options;
  std::shared_ptr<nn::Linear> proj;  // [d_model, p * p * C]
  Tensor cls;                        // [d_model] (cls_token only)
  Tensor pos;                        // [N (+1), d_model]
};

}  // namespace fm::image

#pragma once
// What the two-tower contrastive models (CLIP, CLAP) share: CLIP's text
// tower (token and position embeddings, a causal Transformer, the features
// at each row's end-of-text token, a linear projection), the pooling and
// projection of the other tower's tokens, the learnable logit scale (and
// SigLIP's bias) and the contrastive loss over both towers' features
// (objectives/contrastive.h). A model derives from it, registers its own
// tower (an adapter, a bidirectional Transformer, a projection), then calls
// add_text_tower and init_towers; with a shared core the text tower runs the
// other tower's Transformer and differs from it only in its adapter.
#include <memory>
#include <string>

#include "fm/dist/communicator.h"
#include "fm/nn/transformer.h"
#include "fm/objectives/contrastive.h"

namespace fm::tasks {

struct TextTowerOptions {
  int64_t vocab_size = 0, context_length = 32;
  int64_t width = 128, layers = 4, heads = 4;
  int64_t embed_dim = 128;   // the joint embedding (both projections' output)
  bool shared_core = false;  // run the other tower's Transformer (its width, layers and heads must be equal)
  bool logit_bias = false;   // SigLIP's learnable bias, and SigLIP's initial scale
};

class ContrastiveModel : public nn::Module {
 public:
  // ids [B, L] integer, eot [B] integer (the end-of-text position of each
  // row) -> L2-normalised features [B, embed_dim].
  Tensor encode_text(const Tensor& ids, const Tensor& eot) const;
  // The text tower's final features of every token, [B, L, width] (before
  // pooling and projection): what a text-to-image model reads.
  Tensor text_tokens(const Tensor& ids) const;
  // text_tokens' output at each row's end-of-text, projected and normalised:
  // encode_text(ids, eot) == pool_text(text_tokens(ids), eot).
  Tensor pool_text(const Tensor& tokens, const Tensor& eot) const;
  // The contrastive loss between the other tower's features and the text
  // features (both [B, embed_dim], normalised): siglip_loss when the model
  // has a logit bias, else clip_loss.
  // With a world of several ranks, both are first gathered from every rank
  // (with gradient: fm/dist/gather.h), so the loss sees the world's batch
  // as one rank with all of it would (open_clip's gather_with_grad).
  objectives::ContrastiveOutput loss(const Tensor& features, const Tensor& text_features,
                                     dist::Communicator* world = nullptr) const;
  int64_t context_length() const { return text_options_.context_length; }
  // Forward + backward FLOPs of one pair, for MFU: 6 per parameter per token
  // it acts on, each tower over its own tokens (the other tower's
  // `other_params` over `other_tokens`, the text tower's over context_length),
  // plus attention's products.
  double flops_per_pair(int64_t other_params, int64_t other_tokens, const nn::Transformer& other) const;

  std::shared_ptr<nn::Embedding> token_embedding, positional_embedding;
  std::shared_ptr<nn::Transformer> text;  // null when shared_core
  std::shared_ptr<nn::Linear> text_proj;
  Tensor logit_scale;  // 0-dim, log of the scale
  Tensor logit_bias;   // 0-dim (logit_bias option only)

 protected:
  // A Transformer of `layers` pre-norm blocks (each forward says causal or not).
  static std::shared_ptr<nn::Transformer> make_core(int64_t width, int64_t layers, int64_t heads);
  // Registers the text tower and the logit scale (and bias), after the other
  // tower's modules; `other` is that tower's Transformer. `model` ("CLIP")
  // starts error messages.
  void add_text_tower(const std::string& model, const TextTowerOptions& o, std::shared_ptr<nn::Transformer> other);
  // open_clip's initialisation: GPT-2's for both Transformers, token
  // embeddings N(0, 0.02), positions N(0, 0.01), projections N(0, width^-1/2).
  void init_towers(nn::Transformer& other, nn::Linear& other_proj, Generator* gen);
  // The other tower's output [B, N, width] pooled ("cls": token 0, "mean":
  // all tokens), projected and normalised -> [B, embed_dim].
  static Tensor pool_project(const Tensor& h, const std::string& pool, const nn::Linear& proj);
  static void check_pool(const std::string& model, const std::string& pool);

 private:
  std::string name_;
  TextTowerOptions text_options_;
  std::shared_ptr<nn::Transformer> text_core_;  // `text`, or the other tower's when shared
};

// Features / their L2 norm along the last dimension.
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

}  // namespace fm::tasks

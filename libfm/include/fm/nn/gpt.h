#pragma once
// A GPT-2 style language model on the shared core: token and position
// embeddings, the Transformer, and an LM head tied to the token embedding.
#include "fm/nn/transformer.h"

namespace fm::nn {

struct GPTOptions {
  int64_t vocab_size = 0, block_size = 0;
  int64_t n_layer = 0, n_head = 0, d_model = 0;
  double dropout = 0.0;
  bool bias = true;
  bool tie_embeddings = true;
  std::string activation = "gelu";  // MLP's: "gelu" (exact) or "gelu_tanh" (Hugging Face's gelu_new)
  double norm_eps = 1e-5;           // every LayerNorm's epsilon
};

class GPT : public Module {
 public:
  explicit GPT(const GPTOptions& o, Generator* init_gen = nullptr);
  // ids [B, T] (integer) -> logits [B, T, vocab]. With caches, ids are the
  // next tokens after the cached positions.
  Tensor forward(const Tensor& ids, std::vector<KVCache>* caches = nullptr) const;
  GPTOptions options;
  std::shared_ptr<Embedding> wte, wpe;
  std::shared_ptr<Transformer> transformer;
  std::shared_ptr<Linear> lm_head;  // only when embeddings are not tied
};

}  // namespace fm::nn

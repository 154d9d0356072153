#include "fm/nn/gpt.h"

#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::nn {

GPT::GPT(const GPTOptions& o, Generator* gen) : options(o) {
  wte = register_module("wte", std::make_shared<Embedding>(EmbeddingOptions{o.vocab_size, o.d_model}));
  wpe = register_module("wpe", std::make_shared<Embedding>(EmbeddingOptions{o.block_size, o.d_model}));
  BlockOptions b;
  b.d_model = o.d_model;
  b.n_head = o.n_head;
  b.dropout = o.dropout;
  b.bias = o.bias;
  b.activation = o.activation;
  b.norm_eps = o.norm_eps;
  transformer = register_module("transformer", std::make_shared<Transformer>(TransformerOptions{b, o.n_layer}));
  if (!o.tie_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(LinearOptions{o.d_model, o.vocab_size, false}));
  init::normal_(wte->weight, 0.0, 0.02, gen);
  init::normal_(wpe->weight, 0.0, 0.02, gen);
  init_gpt2(*transformer, gen);
  if (lm_head) init::normal_(lm_head->weight, 0.0, 0.02, gen);
}

Tensor GPT::forward(const Tensor& ids, std::vector<KVCache>* caches) const {
  if (ids.dim() != 2) error("GPT: ids must be [B, T], got ", ids.shape());
  const int64_t start = caches && !caches->empty() ? (*caches)[0].length() : 0;
  const int64_t T = ids.size(1);
  if (start + T > options.block_size)
    error("GPT: sequence of ", start + T, " tokens exceeds block_size ", options.block_size);
  Tensor pos = arange(double(start), double(start + T), 1.0, TensorOptions(DType::i64).device(ids.device()));
  Tensor x = wte->forward(ids) + wpe->forward(pos);
  BlockInputs in;
  in.causal = true;
  Tensor h = transformer->forward(x, in, caches);
  return lm_head ? lm_head->forward(h) : linear(h, wte->weight);
}

}  // namespace fm::nn

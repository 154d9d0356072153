#include "fm/nn/transformer.h"

#include <cmath>

#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::nn {
namespace {

std::shared_ptr<Module> make_norm(const std::string& kind, int64_t d, double eps, bool affine) {
  NormOptions o{d, eps, affine, true};
  if (kind == "layernorm") return std::make_shared<LayerNorm>(o);
  if (kind == "rmsnorm") return std::make_shared<RMSNorm>(o);
  error("TransformerBlock: norm must be 'layernorm' or 'rmsnorm', got '", kind, "'");
}

Tensor apply_norm(const std::shared_ptr<Module>& n, const Tensor& x) {
  if (auto* ln = dynamic_cast<LayerNorm*>(n.get())) return ln->forward(x);
  return static_cast<RMSNorm*>(n.get())->forward(x);
}

// [B, T, H * D] -> [B, H, T, D]
Tensor split_heads(const Tensor& x, int64_t n_head) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  return x.view({B, T, n_head, C / n_head}).transpose(1, 2);
}

// [B, H, T, D] -> [B, T, H * D]
Tensor merge_heads(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  return x.transpose(1, 2).reshape({B, T, H * D});
}

// The cross-attention key mask [B, S] as [B, 1, 1, S] (broadcast over heads
// and queries); undefined when every key is visible.
Tensor key_mask(const BlockInputs& in) {
  const Tensor& m = in.context_mask;
  if (!m.defined()) return m;
  if (m.dim() != 2 || !in.context.defined() || m.size(0) != in.context.size(0) || m.size(1) != in.context.size(1))
    error("TransformerBlock: context_mask must be [B, S] for a context [B, S, D], got ", m.shape());
  return m.unsqueeze(1).unsqueeze(1);
}

}  // namespace

MLP::MLP(const MLPOptions& o) : options(o) {
  if (options.hidden == 0) options.hidden = 4 * o.d_model;
  const int64_t d = o.d_model, h = options.hidden;
  if (o.activation == "swiglu") {
    gate = register_module("gate", std::make_shared<Linear>(LinearOptions{d, h, o.bias}));
    up = register_module("up", std::make_shared<Linear>(LinearOptions{d, h, o.bias}));
  } else if (o.activation == "gelu" || o.activation == "gelu_tanh") {
    fc = register_module("fc", std::make_shared<Linear>(LinearOptions{d, h, o.bias}));
  } else {
    error("MLP: activation must be 'gelu', 'gelu_tanh' or 'swiglu', got '", o.activation, "'");
  }
  proj = register_module("proj", std::make_shared<Linear>(LinearOptions{h, d, o.bias}));
  drop = register_module("drop", std::make_shared<Dropout>(o.dropout));
}

Tensor MLP::forward(const Tensor& x) const {
  Tensor h;
  if (gate) h = silu(gate->forward(x)) * up->forward(x);
  else h = gelu(fc->forward(x), options.activation == "gelu_tanh" ? "tanh" : "none");
  return drop->forward(proj->forward(h));
}

MultiheadAttention::MultiheadAttention(const AttentionOptions& o) : options(o) {
  if (o.n_head <= 0 || o.d_model % o.n_head != 0)
    error("MultiheadAttention: d_model ", o.d_model, " must be a positive multiple of n_head ", o.n_head);
  const int64_t d = o.d_model;
  if (o.cross) {
    q = register_module("q", std::make_shared<Linear>(LinearOptions{d, d, o.bias}));
    kv = register_module("kv", std::make_shared<Linear>(LinearOptions{o.context_dim ? o.context_dim : d, 2 * d, o.bias}));
  } else {
    qkv = register_module("qkv", std::make_shared<Linear>(LinearOptions{d, 3 * d, o.bias}));
  }
  proj = register_module("proj", std::make_shared<Linear>(LinearOptions{d, d, o.bias}));
  drop = register_module("drop", std::make_shared<Dropout>(o.dropout));
}

Tensor MultiheadAttention::forward(const Tensor& x, const Tensor& context, const Tensor& mask, bool causal,
                                   KVCache* cache) const {
  if (x.dim() != 3 || x.size(2) != options.d_model)
    error("MultiheadAttention: input must be [B, T, ", options.d_model, "], got ", x.shape());
  const int64_t d = options.d_model, H = options.n_head;
  Tensor qh, kh, vh;
  if (options.cross) {
    qh = split_heads(q->forward(x), H);
    if (cache && cache->cross_k.defined()) {
      kh = cache->cross_k;
      vh = cache->cross_v;
    } else {
      if (!context.defined()) error("MultiheadAttention: cross-attention needs a context");
      Tensor kvo = kv->forward(context);
      kh = split_heads(kvo.narrow(2, 0, d), H);
      vh = split_heads(kvo.narrow(2, d, d), H);
      if (cache) cache->cross_k = kh.detach(), cache->cross_v = vh.detach();
    }
  } else {
    Tensor all = qkv->forward(x);
    if (!options.rotary && !cache)  // the common case: no head split or merge copies
      return drop->forward(proj->forward(scaled_dot_product_attention_qkvpacked(all, H, mask, causal)));
    qh = split_heads(all.narrow(2, 0, d), H);
    kh = split_heads(all.narrow(2, d, d), H);
    vh = split_heads(all.narrow(2, 2 * d, d), H);
    const int64_t start = cache ? cache->length() : 0;
    if (options.rotary) {
      qh = rotary_embedding(qh, start, options.rope_theta);
      kh = rotary_embedding(kh, start, options.rope_theta);
    }
    if (cache) {
      if (cache->k.defined()) {
        kh = cat({cache->k, kh}, 2);
        vh = cat({cache->v, vh}, 2);
      }
      cache->k = kh.detach();
      cache->v = vh.detach();
    }
  }
  Tensor y = scaled_dot_product_attention(qh, kh, vh, mask, causal);
  return drop->forward(proj->forward(merge_heads(y)));
}

TransformerBlock::TransformerBlock(const BlockOptions& o) : options(o) {
  const bool ada_ln = o.cond_dim > 0;
  norm1 = register_module("norm1", make_norm(o.norm, o.d_model, o.norm_eps, !ada_ln));
  attn = register_module("attn", std::make_shared<MultiheadAttention>(
                                     AttentionOptions{o.d_model, o.n_head, o.bias, o.dropout, o.rotary, 10000.0}));
  if (o.cross_attention) {
    norm_cross = register_module("norm_cross", make_norm(o.norm, o.d_model, o.norm_eps, true));
    AttentionOptions co{o.d_model, o.n_head, o.bias, o.dropout};
    co.cross = true;
    co.context_dim = o.context_dim;
    cross = register_module("cross", std::make_shared<MultiheadAttention>(co));
  }
  norm2 = register_module("norm2", make_norm(o.norm, o.d_model, o.norm_eps, !ada_ln));
  mlp = register_module("mlp", std::make_shared<MLP>(MLPOptions{o.d_model, o.mlp_hidden, o.activation, o.bias, o.dropout}));
  if (ada_ln) {
    ada = register_module("ada", std::make_shared<Linear>(LinearOptions{o.cond_dim, 6 * o.d_model, true}));
    init::zeros_(ada->weight);  // adaLN-Zero: every block starts as the identity
    init::zeros_(ada->bias);
  }
}

Tensor TransformerBlock::norm(const std::shared_ptr<Module>& n, const Tensor& x) const { return apply_norm(n, x); }

Tensor TransformerBlock::forward(const Tensor& x_in, const BlockInputs& in) const {
  Tensor x = x_in;
  if (ada) {
    if (!in.cond.defined()) error("TransformerBlock: adaLN-Zero block needs a cond vector");
    std::vector<Tensor> m = chunk(ada->forward(silu(in.cond)).unsqueeze(1), 6, -1);  // each [B, 1, d]
    Tensor h = norm(norm1, x) * (m[1] + 1.0) + m[0];
    x = x + m[2] * attn->forward(h, Tensor(), in.mask, in.causal, in.cache);
    if (cross) x = x + cross->forward(norm(norm_cross, x), in.context, key_mask(in), false, in.cache);
    h = norm(norm2, x) * (m[4] + 1.0) + m[3];
    return x + m[5] * mlp->forward(h);
  }
  x = x + attn->forward(norm(norm1, x), Tensor(), in.mask, in.causal, in.cache);
  if (cross) x = x + cross->forward(norm(norm_cross, x), in.context, key_mask(in), false, in.cache);
  return x + mlp->forward(norm(norm2, x));
}

Transformer::Transformer(const TransformerOptions& o) : options(o) {
  if (o.n_layer <= 0) error("Transformer: n_layer must be positive, got ", o.n_layer);
  blocks = register_module("blocks", std::make_shared<ModuleList<TransformerBlock>>());
  for (int64_t i = 0; i < o.n_layer; ++i) blocks->push_back(std::make_shared<TransformerBlock>(o.block));
  norm = register_module("norm", make_norm(o.block.norm, o.block.d_model, o.block.norm_eps, o.final_norm_affine));
}

Tensor Transformer::final_norm(const Tensor& x) const { return apply_norm(norm, x); }

Tensor Transformer::forward(const Tensor& x_in, const BlockInputs& in, std::vector<KVCache>* caches) const {
  if (caches && caches->size() != blocks->size()) caches->resize(blocks->size());
  Tensor x = x_in;
  BlockInputs bi = in;
  for (size_t i = 0; i < blocks->size(); ++i) {
    bi.cache = caches ? &(*caches)[i] : nullptr;
    x = (*blocks)[i].forward(x, bi);
  }
  return final_norm(x);
}

void select_cache_rows(std::vector<KVCache>& caches, const Tensor& index) {
  for (KVCache& c : caches) {
    const int64_t rows = c.k.defined() ? c.k.size(0) : -1;
    if (c.k.defined()) c.k = index_select(c.k, 0, index), c.v = index_select(c.v, 0, index);
    if (c.cross_k.defined() && c.cross_k.size(0) == rows)
      c.cross_k = index_select(c.cross_k, 0, index), c.cross_v = index_select(c.cross_v, 0, index);
  }
}

Tensor timestep_sinusoids(const Tensor& t, int64_t dim, double max_period) {
  if (t.dim() != 1) error("timestep_sinusoids: timesteps must be [B], got ", t.shape());
  const int64_t half = dim / 2;
  Tensor freqs = exp(arange(0, double(half), 1.0, TensorOptions(DType::f32).device(t.device())) *
                     (-std::log(max_period) / double(half)));
  Tensor args = t.to(DType::f32).unsqueeze(1) * freqs.unsqueeze(0);
  Tensor emb = cat({cos(args), sin(args)}, 1);
  if (dim % 2) emb = pad(emb, {0, 1});
  return emb;
}

TimestepEmbedding::TimestepEmbedding(const TimestepEmbeddingOptions& o) : options(o) {
  fc1 = register_module("fc1", std::make_shared<Linear>(LinearOptions{o.frequency_dim, o.d_out, true}));
  fc2 = register_module("fc2", std::make_shared<Linear>(LinearOptions{o.d_out, o.d_out, true}));
}

Tensor TimestepEmbedding::forward(const Tensor& t) const {
  return fc2->forward(silu(fc1->forward(timestep_sinusoids(t, options.frequency_dim, options.max_period))));
}

void init_gpt2(Transformer& t, Generator* gen) {
  const double residual_std = 0.02 / std::sqrt(2.0 * double(t.options.n_layer));
  for (auto& p : t.named_parameters()) {
    const std::string& n = p.name;
    auto ends_with = [&](const std::string& s) { return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0; };
    if (n.find(".ada.") != std::string::npos) continue;  // adaLN-Zero stays zero
    if (p.tensor.dim() >= 2) init::normal_(p.tensor, 0.0, ends_with("proj.weight") ? residual_std : 0.02, gen);
    else if (ends_with(".bias") && n.find("norm") == std::string::npos) init::zeros_(p.tensor);
  }
}

}  // namespace fm::nn

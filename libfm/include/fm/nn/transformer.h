#pragma once
// The shared transformer core (DESIGN.md): pre-norm blocks of attention and
// MLP, optional cross-attention, optional adaLN-Zero modulation from a
// conditioning vector (as DiT), and a KV cache for incremental decoding.
#include <memory>
#include <string>

#include "fm/nn/layers.h"
#include "fm/random.h"

namespace fm::nn {

struct MLPOptions {
  int64_t d_model = 0;
  int64_t hidden = 0;                // 0: 4 * d_model
  std::string activation = "gelu";   // "gelu", "gelu_tanh" or "swiglu"
  bool bias = true;
  double dropout = 0.0;
};
// gelu: proj(act(fc(x))); swiglu: proj(silu(gate(x)) * up(x)).
class MLP : public Module {
 public:
  explicit MLP(const MLPOptions& o);
  Tensor forward(const Tensor& x) const;
  MLPOptions options;
  std::shared_ptr<Linear> fc, gate, up, proj;  // fc for gelu; gate and up for swiglu
  std::shared_ptr<Dropout> drop;
};

// One layer's cache for incremental decoding: the self-attention keys and
// values of earlier positions, and the cross-attention keys and values of the
// context (computed at the first call, then reused: an encoder's output is
// projected once per sequence, not at every decoding step). All [B, H, L, D].
struct KVCache {
  Tensor k, v;
  Tensor cross_k, cross_v;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
  void clear() { k = Tensor(), v = Tensor(), cross_k = Tensor(), cross_v = Tensor(); }
};

// Keeps rows `index` [R] (i64) of every self-attention cache, in that order
// (beam search: each surviving beam continues its parent's keys and values).
// Cross-attention caches are kept too when they have as many rows as the
// self-attention ones.
void select_cache_rows(std::vector<KVCache>& caches, const Tensor& index);

struct AttentionOptions {
  int64_t d_model = 0, n_head = 0;
  bool bias = true;
  double dropout = 0.0;      // on the output projection
  bool rotary = false;       // rotary embeddings on q and k (self-attention)
  double rope_theta = 10000.0;
  bool cross = false;        // keys and values from a context sequence
  int64_t context_dim = 0;   // cross only; 0: d_model
};

class MultiheadAttention : public Module {
 public:
  explicit MultiheadAttention(const AttentionOptions& o);
  // x [B, T, d_model]. Self-attention (cross = false): q, k, v from x; with a
  // cache, k and v of x are appended to it and attention covers all cached
  // positions (outputs equal those of the full forward). Cross-attention:
  // k and v from context [B, S, context_dim]; with a cache, from the cache
  // once it holds them (context may then be undefined). mask: bool or additive,
  // broadcastable to [B, H, T, keys].
  Tensor forward(const Tensor& x, const Tensor& context = Tensor(), const Tensor& mask = Tensor(),
                 bool causal = false, KVCache* cache = nullptr) const;
  AttentionOptions options;
  std::shared_ptr<Linear> qkv;      // self: [3 d, d]
  std::shared_ptr<Linear> q, kv;    // cross: [d, d] and [2 d, context_dim]
  std::shared_ptr<Linear> proj;
  std::shared_ptr<Dropout> drop;
};

struct BlockOptions {
  int64_t d_model = 0, n_head = 0;
  int64_t mlp_hidden = 0;            // 0: 4 * d_model
  std::string activation = "gelu";   // see MLPOptions
  std::string norm = "layernorm";    // or "rmsnorm"
  double norm_eps = 1e-5;
  bool bias = true;
  double dropout = 0.0;
  bool rotary = false;
  bool cross_attention = false;
  int64_t context_dim = 0;           // 0: d_model
  int64_t cond_dim = 0;              // > 0: adaLN-Zero modulation from a [B, cond_dim] vector
};

// What a block reads besides x.
struct BlockInputs {
  Tensor context;       // [B, S, context_dim] for cross-attention
  Tensor context_mask;  // [B, S] bool, true = attend (cross-attention only; undefined: all keys)
  Tensor mask;          // self-attention mask
  bool causal = false;
  Tensor cond;          // [B, cond_dim] for adaLN-Zero
  KVCache* cache = nullptr;
};

// Pre-norm block:
//   x += attn(norm1(x));  [x += cross(norm_cross(x), context)];  x += mlp(norm2(x))
// With adaLN-Zero, cond gives per-sample shift, scale and gate for the attention
// and MLP branches (norms then have no affine parameters), and the
// modulation layer starts at zero so each block starts as the identity.
class TransformerBlock : public Module {
 public:
  explicit TransformerBlock(const BlockOptions& o);
  Tensor forward(const Tensor& x, const BlockInputs& in = {}) const;
  BlockOptions options;
  std::shared_ptr<Module> norm1, norm_cross, norm2;  // LayerNorm or RMSNorm
  std::shared_ptr<MultiheadAttention> attn, cross;
  std::shared_ptr<MLP> mlp;
  std::shared_ptr<Linear> ada;  // cond -> 6 * d_model (shift, scale, gate for attn and mlp)

 private:
  Tensor norm(const std::shared_ptr<Module>& n, const Tensor& x) const;
};

struct TransformerOptions {
  BlockOptions block;
  int64_t n_layer = 0;
  bool final_norm_affine = true;  // false: a final norm without weight or bias (DiT's, modulated after it)
};

// The shared core: a stack of blocks and a final norm.
class Transformer : public Module {
 public:
  explicit Transformer(const TransformerOptions& o);
  // caches: one per layer (n_layer entries) for incremental decoding, or null.
  Tensor forward(const Tensor& x, const BlockInputs& in = {}, std::vector<KVCache>* caches = nullptr) const;
  TransformerOptions options;
  std::shared_ptr<ModuleList<TransformerBlock>> blocks;
  std::shared_ptr<Module> norm;  // final LayerNorm or RMSNorm (affine unless final_norm_affine is false)

 private:
  Tensor final_norm(const Tensor& x) const;
};

// Sinusoidal embedding of (diffusion) timesteps followed by an MLP
// (Linear, SiLU, Linear), as DiT: t [B] -> [B, d_out].
struct TimestepEmbeddingOptions {
  int64_t frequency_dim = 256;
  int64_t d_out = 0;
  double max_period = 10000.0;
};
class TimestepEmbedding : public Module {
 public:
  explicit TimestepEmbedding(const TimestepEmbeddingOptions& o);
  Tensor forward(const Tensor& t) const;
  TimestepEmbeddingOptions options;
  std::shared_ptr<Linear> fc1, fc2;
};
// [B] -> [B, dim]: cos of the first half, sin of the second (DiT's order).
Tensor timestep_sinusoids(const Tensor& t, int64_t dim, double max_period = 10000.0);

// GPT-2 initialisation of a transformer: normal(0, 0.02) for weights, zeros
// for biases, and residual projections (attention and MLP outputs) scaled by
// 1/sqrt(2 n_layer). adaLN modulation layers stay zero.
void init_gpt2(Transformer& t, Generator* gen = nullptr);

}  // namespace fm::nn

#pragma once
// DiT (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers") on
// the shared core: the noisy sample is cut into p x p patches (patchify's
// (py, px, c) order through one Linear, the map of DiT's stride-p conv), fixed
// 2-D sin-cos positions are added, and adaLN-Zero blocks run under a
// conditioning vector c = timestep embedding (+ a projected pooled caption).
// Blocks may also cross-attend to caption token features (not in the paper:
// a pre-norm, ungated sublayer between attention and MLP, see
// nn::TransformerBlock). DiT's final layer (LayerNorm without affine,
// modulated by c, a zero-initialised Linear) maps each token back to a patch.
#include <memory>

#include "fm/nn/transformer.h"
#include "fm/random.h"

namespace fm::tasks {

struct DiTOptions {
  int64_t image_size = 32, patch_size = 2, channels = 3;  // pixels or latents [B, C, H, W]
  int64_t width = 256, layers = 6, heads = 4;
  int64_t mlp_hidden = 0;        // 0: 4 * width
  int64_t cond_dim = 0;          // > 0: a pooled caption vector [B, cond_dim] is projected (Linear) and added to the timestep embedding
  bool cross_attention = false;  // blocks attend to caption token features
  int64_t context_dim = 0;       // their width (cross_attention only; 0: width)
  int64_t frequency_dim = 256;   // timestep sinusoids
};

class DiT : public nn::Module {
 public:
  // Initialised as DiT's initialize_weights (from init_gen, or the default
  // generator): xavier_uniform linears with zero biases, timestep MLP weights
  // normal(0, 0.02), adaLN modulation and the final projection zero, so a
  // fresh DiT outputs exactly zero.
  explicit DiT(const DiTOptions& o, Generator* init_gen = nullptr);
  // x [B, C, H, W] (noisy sample), t [B] f32 (the network-facing timestep),
  // pooled [B, cond_dim] (or undefined when cond_dim == 0), context
  // [B, S, context_dim] and context_mask [B, S] bool (true = attend; may be
  // undefined = all) for cross-attention. Returns [B, C, H, W] (the
  // prediction: epsilon, v, x0 or velocity, as the objective defines).
  Tensor forward(const Tensor& x, const Tensor& t, const Tensor& pooled = Tensor(), const Tensor& context = Tensor(),
                 const Tensor& context_mask = Tensor()) const;
  int64_t num_patches() const;

  DiTOptions options;
  std::shared_ptr<nn::Linear> patch_proj;       // p*p*C -> width on patchify's (py, px, c) order (= DiT's stride-p conv)
  Tensor pos;                                   // buffer: fixed 2-D sincos [N, width], not trained
  std::shared_ptr<nn::TimestepEmbedding> t_embed;
  std::shared_ptr<nn::Linear> cond_proj;        // cond_dim > 0 only
  std::shared_ptr<nn::Transformer> core;        // adaLN-Zero blocks (cond_dim = width); its final norm is DiT's norm_final
  std::shared_ptr<nn::Linear> final_ada;        // SiLU(c) -> 2*width (shift, scale), zero init
  std::shared_ptr<nn::Linear> final_proj;       // width -> p*p*C, zero init
};

// FLOPs of one image's forward + backward (3x the forward's matrix products,
// 2 per multiply-add): every Linear on every token (or once per image for the
// conditioning path), and attention's score and value products, self and,
// with cross_attention, over context_len caption tokens.
double dit_flops_per_image(const DiTOptions& o, int64_t context_len = 0);

}  // namespace fm::tasks

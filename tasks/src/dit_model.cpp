#include "fm/tasks/dit_model.h"

#include "fm/factory.h"
#include "fm/image/patches.h"
#include "fm/nn/init.h"
#include "fm/ops.h"
#include "fm/strings.h"

namespace fm::tasks {

DiT::DiT(const DiTOptions& o, Generator* gen) : options(o) {
  if (o.patch_size <= 0 || o.image_size % o.patch_size != 0)
    error("DiT: image_size ", o.image_size, " must be a multiple of patch_size ", o.patch_size);
  if (o.width % 4 != 0) error("DiT: width must be a multiple of 4 (2-D sin-cos positions), got ", o.width);
  if (o.cond_dim < 0) error("DiT: cond_dim must be >= 0, got ", o.cond_dim);
  const int64_t w = o.width, grid = o.image_size / o.patch_size, patch_dim = o.patch_size * o.patch_size * o.channels;
  patch_proj = register_module("patch_proj", std::make_shared<nn::Linear>(nn::LinearOptions{patch_dim, w, true}));
  pos = register_buffer("pos", image::sincos_pos_embed_2d(w, grid, grid));
  t_embed = register_module("t_embed", std::make_shared<nn::TimestepEmbedding>(
                                           nn::TimestepEmbeddingOptions{o.frequency_dim, w}));
  if (o.cond_dim > 0) cond_proj = register_module("cond_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.cond_dim, w, true}));
  nn::BlockOptions b;
  b.d_model = w;
  b.n_head = o.heads;
  b.mlp_hidden = o.mlp_hidden;
  b.activation = "gelu_tanh";  // DiT's approx_gelu
  b.norm_eps = 1e-6;
  b.cross_attention = o.cross_attention;
  b.context_dim = o.context_dim;
  b.cond_dim = w;
  // DiT has no plain final norm: its FinalLayer starts with a LayerNorm
  // without affine (eps 1e-6) that c then modulates. A Transformer whose
  // final norm has no affine parameters is exactly that norm, so the blocks
  // stay the shared core's, and no unused weight exists to train or save.
  nn::TransformerOptions to{b, o.layers};
  to.final_norm_affine = false;
  core = register_module("core", std::make_shared<nn::Transformer>(to));
  final_ada = register_module("final_ada", std::make_shared<nn::Linear>(nn::LinearOptions{w, 2 * w, true}));
  final_proj = register_module("final_proj", std::make_shared<nn::Linear>(nn::LinearOptions{w, patch_dim, true}));

  // DiT's initialize_weights: xavier_uniform on every Linear (the patch
  // projection is the conv weight's flattened [width, p*p*C] view), zero
  // biases; the timestep MLP's weights normal(0, 0.02); adaLN modulation and
  // the final projection zero. The cross-attention norm keeps ones and zeros.
  for (const auto& p : named_parameters()) {
    if (p.tensor.dim() >= 2) nn::init::xavier_uniform_(p.tensor, 1.0, gen);
    else if (p.name.find("norm") == std::string::npos && ends_with(p.name, ".bias")) nn::init::zeros_(p.tensor);
  }
  nn::init::normal_(t_embed->fc1->weight, 0.0, 0.02, gen);
  nn::init::normal_(t_embed->fc2->weight, 0.0, 0.02, gen);
  for (const auto& block : *core->blocks) {
    nn::init::zeros_(block->ada->weight);
    nn::init::zeros_(block->ada->bias);
  }
  for (const auto& zero : {final_ada, final_proj}) {
    nn::init::zeros_(zero->weight);
    nn::init::zeros_(zero->bias);
  }
}

int64_t DiT::num_patches() const {
  const int64_t grid = options.image_size / options.patch_size;
  return grid * grid;
}

Tensor DiT::forward(const Tensor& x, const Tensor& t, const Tensor& pooled, const Tensor& context,
                    const Tensor& context_mask) const {
  const DiTOptions& o = options;
  if (x.dim() != 4 || x.size(1) != o.channels || x.size(2) != o.image_size || x.size(3) != o.image_size)
    error("DiT: x must be [B, ", o.channels, ", ", o.image_size, ", ", o.image_size, "], got ", x.shape());
  const int64_t B = x.size(0);
  if (t.dim() != 1 || t.size(0) != B) error("DiT: t must be [", B, "], got ", t.shape());
  Tensor c = t_embed->forward(t);
  if (cond_proj) {
    if (!pooled.defined() || pooled.dim() != 2 || pooled.size(0) != B || pooled.size(1) != o.cond_dim)
      error("DiT: pooled must be [", B, ", ", o.cond_dim, "]", pooled.defined() ? ", got " + pooled.shape().str() : "");
    c = c + cond_proj->forward(pooled);
  } else if (pooled.defined()) {
    error("DiT: a pooled vector was given but cond_dim is 0");
  }
  nn::BlockInputs in;
  in.cond = c;
  if (o.cross_attention) {
    if (!context.defined()) error("DiT: cross_attention needs a context [B, S, context_dim]");
    in.context = context;
    in.context_mask = context_mask;
  } else if (context.defined() || context_mask.defined()) {
    error("DiT: a context was given but cross_attention is off");
  }
  Tensor h = core->forward(patch_proj->forward(image::patchify(x, o.patch_size)) + pos, in);  // ends in norm_final
  std::vector<Tensor> m = chunk(final_ada->forward(silu(c)).unsqueeze(1), 2, -1);  // shift, scale: [B, 1, width]
  h = h * (m[1] + 1.0) + m[0];
  return image::unpatchify(final_proj->forward(h), o.patch_size, o.channels, o.image_size, o.image_size);
}

double dit_flops_per_image(const DiTOptions& o, int64_t context_len) {
  const double N = double(o.image_size / o.patch_size) * double(o.image_size / o.patch_size);
  const double w = double(o.width), P = double(o.patch_size * o.patch_size * o.channels);
  const double hidden = double(o.mlp_hidden ? o.mlp_hidden : 4 * o.width);
  // Per block: qkv, attention projection and MLP on every token, scores and
  // values over N keys, and the adaLN modulation once per image.
  double block = 2.0 * N * (4.0 * w * w + 2.0 * w * hidden) + 4.0 * N * N * w + 2.0 * w * 6.0 * w;
  if (o.cross_attention) {
    const double S = double(context_len), cd = double(o.context_dim ? o.context_dim : o.width);
    block += 2.0 * N * 2.0 * w * w + 2.0 * S * cd * 2.0 * w + 4.0 * N * S * w;  // q and proj, k and v, scores and values
  }
  double forward = 2.0 * N * P * w                                         // patch projection
                   + 2.0 * (double(o.frequency_dim) * w + w * w)           // timestep MLP
                   + 2.0 * double(o.cond_dim) * w                          // pooled caption projection
                   + double(o.layers) * block + 2.0 * w * 2.0 * w + 2.0 * N * w * P;  // blocks, final layer
  return 3.0 * forward;
}

}  // namespace fm::tasks

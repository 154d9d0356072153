#include "fm/tasks/clip_model.h"

namespace fm::tasks {

CLIP::CLIP(const CLIPOptions& o, Generator* gen) : options(o) {
  check_pool("CLIP", o.pool);
  image::PatchEmbeddingOptions pe;
  pe.image_size = o.image_size;
  pe.patch_size = o.patch_size;
  pe.channels = o.channels;
  pe.d_model = o.vision_width;
  pe.cls_token = o.pool == "cls";
  patch_embed = register_module("patch_embed", std::make_shared<image::PatchEmbedding>(pe, gen));
  visual = register_module("visual", make_core(o.vision_width, o.vision_layers, o.vision_heads));
  visual_proj = register_module("visual_proj", std::make_shared<nn::Linear>(nn::LinearOptions{o.vision_width, o.embed_dim, false}));
  add_text_tower("CLIP", {o.vocab_size, o.context_length, o.text_width, o.text_layers, o.text_heads, o.embed_dim,
                          o.shared_core, o.logit_bias},
                 visual);
  init_towers(*visual, *visual_proj, gen);
}

Tensor CLIP::encode_image(const Tensor& images) const {
  // Bidirectional; the final norm acts on every token.
  return pool_project(visual->forward(patch_embed->forward(images)), options.pool, *visual_proj);
}

}  // namespace fm::tasks

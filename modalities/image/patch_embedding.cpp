#include "fm/image/patch_embedding.h"

#include <cmath>

#include "fm/factory.h"
#include "fm/image/patches.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::image {

PatchEmbedding::PatchEmbedding(const PatchEmbeddingOptions& o, Generator* gen) : options(o) {
  if (o.patch_size <= 0 || o.image_size % o.patch_size != 0)
    error("PatchEmbedding: image_size ", o.image_size, " is not a multiple of patch_size ", o.patch_size);
  const int64_t n = num_patches() + (o.cls_token ? 1 : 0);
  proj = register_module("proj", std::make_shared<nn::Linear>(
                                     nn::LinearOptions{o.patch_size * o.patch_size * o.channels, o.d_model, true}));
  pos = register_parameter("pos", zeros({n, o.d_model}), nn::kNoDecay);
  if (o.cls_token) cls = register_parameter("cls", zeros({o.d_model}), nn::kNoDecay);
  // open_clip's scale for the class token and positions: width^-0.5.
  const double scale = 1.0 / std::sqrt(double(o.d_model));
  nn::init::normal_(pos, 0.0, scale, gen);
  if (o.cls_token) nn::init::normal_(cls, 0.0, scale, gen);
}

int64_t PatchEmbedding::num_patches() const {
  const int64_t g = options.image_size / options.patch_size;
  return g * g;
}

Tensor PatchEmbedding::forward(const Tensor& images) const {
  if (images.dim() != 4 || images.size(1) != options.channels || images.size(2) != options.image_size ||
      images.size(3) != options.image_size)
    error("PatchEmbedding: images must be [B, ", options.channels, ", ", options.image_size, ", ", options.image_size,
          "], got ", images.shape());
  Tensor x = proj->forward(patchify(images, options.patch_size));
  if (options.cls_token) x = cat({cls.view({1, 1, options.d_model}).expand({x.size(0), 1, options.d_model}), x}, 1);
  return x + pos;
}

}  // namespace fm::image

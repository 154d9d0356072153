#pragma once
// Images as sequences of patches for ViT / MAE, and their 2-D positions.
// Pure tensor ops (reshape, permute): differentiable, any device and dtype.
#include <cstdint>

#include "fm/tensor.h"

namespace fm::image {

// [B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], as MAE's patchify: patches in
// row-major order of the patch grid, each flattened as (py, px, c).
// H and W must be multiples of p.
fm::Tensor patchify(const fm::Tensor& images, int64_t patch);
// The inverse: [B, (H/p)*(W/p), p*p*C] -> [B, C, H, W].
fm::Tensor unpatchify(const fm::Tensor& patches, int64_t patch, int64_t channels, int64_t height, int64_t width);

// [grid_h * grid_w, dim] f32: MAE's get_2d_sincos_pos_embed (no cls token),
// for a grid_h x grid_w grid. Row r, column c (row-major position r*grid_w+c)
// gets [sin(c*w), cos(c*w), sin(r*w), cos(r*w)] with w_k = 10000^(-k/(dim/4)),
// k < dim/4: the first half encodes the column, as in MAE (its meshgrid puts
// w first). dim must be a multiple of 4.
fm::Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_h, int64_t grid_w);

}  // namespace fm::image

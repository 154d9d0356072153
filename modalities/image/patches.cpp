// ViT/MAE patch sequences as views (reshape, permute), so autograd and every
// backend come for free; sincos positions are built on the host in f64, as
// MAE's numpy code, and stored as f32.
#include <cmath>
#include <vector>

#include "fm/error.h"
#include "fm/factory.h"
#include "fm/image/patches.h"

namespace fm::image {

fm::Tensor patchify(const fm::Tensor& images, int64_t patch) {
  if (images.dim() != 4 || patch <= 0 || images.size(2) % patch != 0 || images.size(3) % patch != 0)
    error("patchify: images ", images.shape(), " must be [B, C, H, W] with H and W multiples of the patch size ",
          patch);
  const int64_t B = images.size(0), C = images.size(1), h = images.size(2) / patch, w = images.size(3) / patch;
  return images.reshape({B, C, h, patch, w, patch})
      .permute({0, 2, 4, 3, 5, 1})  // B, h, w, py, px, C
      .reshape({B, h * w, patch * patch * C});
}

fm::Tensor unpatchify(const fm::Tensor& patches, int64_t patch, int64_t channels, int64_t height, int64_t width) {
  if (patch <= 0 || channels <= 0 || height % patch != 0 || width % patch != 0 || height <= 0 || width <= 0)
    error("unpatchify: patch ", patch, ", channels ", channels, ", image ", height, "x", width,
          ": H and W must be positive multiples of the patch size");
  const int64_t h = height / patch, w = width / patch;
  if (patches.dim() != 3 || patches.size(1) != h * w || patches.size(2) != patch * patch * channels)
    error("unpatchify: patches ", patches.shape(), " are not [B, ", h * w, ", ", patch * patch * channels, "] for a ",
          channels, "x", height, "x", width, " image and patch ", patch);
  const int64_t B = patches.size(0);
  return patches.reshape({B, h, w, patch, patch, channels})
      .permute({0, 5, 1, 3, 2, 4})  // B, C, h, py, w, px
      .reshape({B, channels, height, width});
}

fm::Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_h, int64_t grid_w) {
  if (dim <= 0 || dim % 4 != 0 || grid_h <= 0 || grid_w <= 0)
    error("sincos_pos_embed_2d: dim ", dim, " must be a positive multiple of 4 and the grid ", grid_h, "x", grid_w,
          " positive");
  const int64_t quarter = dim / 4;
  std::vector<double> omega(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k) omega[size_t(k)] = 1.0 / std::pow(10000.0, double(k) / double(quarter));
  std::vector<float> out(size_t(grid_h * grid_w * dim));
  for (int64_t r = 0; r < grid_h; ++r)
    for (int64_t c = 0; c < grid_w; ++c) {
      float* row = &out[size_t((r * grid_w + c) * dim)];
      const double pos[2] = {double(c), double(r)};  // MAE: column first
      for (int half = 0; half < 2; ++half)
        for (int64_t k = 0; k < quarter; ++k) {
          const double angle = pos[half] * omega[size_t(k)];
          row[half * 2 * quarter + k] = float(std::sin(angle));
          row[half * 2 * quarter + quarter + k] = float(std::cos(angle));
        }
    }
  return fm::tensor(out, Shape{grid_h * grid_w, dim});
}

}  // namespace fm::image

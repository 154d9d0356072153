#pragma once
// Image transforms as torchvision.transforms.v2.functional computes them on
// uint8 tensors, checked against torchvision by tests/image/ (fixtures from
// tests/fixtures/make_image_fixtures.py). They work on any channel count.
#include <functional>
#include <vector>

#include "fm/image/image.h"
#include "fm/tensor.h"

namespace fm::image {

// Bilinear resize to height x width (align_corners=False). With antialias,
// downscaling widens the triangle filter by the scale factor (PIL's and
// torchvision's antialias=True); without, it is plain bilinear. Within 1 level
// of torchvision on uint8 tensors: of its float path (uint8 -> f32 ->
// interpolate -> round, CPUs without AVX2) only on rounding ties (9 of 66282
// bytes in the fixtures); of its native uint8 kernel (fixed-point weights,
// AVX2 CPUs) on ~11% of bytes, as much as torch's two paths differ from each
// other. Same size returns a copy.
Image resize(const Image& img, int height, int width, bool antialias = true);
// torchvision Resize(int): the shorter side becomes `size`, the longer
// int(size * long / short) (truncated, as torchvision).
Image resize_shorter(const Image& img, int size, bool antialias = true);

// The height x width window at (top, left); parts outside the image are zero,
// as torchvision's crop.
Image crop(const Image& img, int top, int left, int height, int width);
// torchvision's center_crop: offset round((H - h) / 2) (half to even), and
// zero padding ((h - H) // 2 above) where the crop is larger than the image.
Image center_crop(const Image& img, int height, int width);
Image hflip(const Image& img);

struct CropBox {
  int top, left, height, width;
};

// torchvision's RandomResizedCrop.get_params: up to 10 attempts, each taking
// a target area and a log-uniform aspect ratio; the first box that fits is
// placed uniformly; after 10 misses, the central fallback (ratio clamped to
// [ratio_lo, ratio_hi]). `uniform` returns the next U[0,1) draw u (pass a
// per-sample counter-based stream for deterministic augmentation). Each torch
// draw takes one u, in torchvision's order:
//   area scale  = float32(scale_lo + (scale_hi - scale_lo) * u)
//   log ratio   = float32(log r_lo + (log r_hi - log r_lo) * u), then expf
//   top, left   = min(floor(u * n), n - 1) for randint(0, n), n = H - h + 1 (then W - w + 1)
// so an attempt takes 2 draws, a success 2 more, the fallback 20 in all.
CropBox random_resized_crop_box(int height, int width, const std::function<double()>& uniform,
                                double scale_lo = 0.08, double scale_hi = 1.0, double ratio_lo = 3.0 / 4,
                                double ratio_hi = 4.0 / 3);

// HWC uint8 -> CHW f32 on the CPU: x * (1/255) as torchvision's
// to_dtype(float32, scale=True), then (x - mean[c]) / std[c] when given (one
// value per channel, or both empty).
fm::Tensor to_tensor(const Image& img, const std::vector<float>& mean = {}, const std::vector<float>& std = {});
// CHW floating tensor (any device) in [0, 1] -> uint8 as torchvision's
// save_image: clamp(x * 255 + 0.5, 0, 255), truncated; NaN becomes 0.
// C must be 1 or 3; from_tensor(to_tensor(img)) == img.
Image from_tensor(const fm::Tensor& chw);

}  // namespace fm::image

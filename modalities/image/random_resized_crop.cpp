// torchvision's RandomResizedCrop.get_params with its torch draws taken from
// a caller's uniform stream (the mapping is in transforms.h). The float32
// steps are torch's: its draws land in float32 tensors and log/exp run on them.
#include <algorithm>
#include <cmath>

#include "fm/error.h"
#include "fm/image/transforms.h"

namespace fm::image {
namespace {

int round_half_even(double x) { return int(std::nearbyint(x)); }  // Python's round()

}  // namespace

CropBox random_resized_crop_box(int height, int width, const std::function<double()>& uniform, double scale_lo,
                                double scale_hi, double ratio_lo, double ratio_hi) {
  if (height <= 0 || width <= 0) error("random_resized_crop_box: image size ", height, "x", width);
  if (!(scale_lo <= scale_hi) || !(ratio_lo <= ratio_hi) || !(ratio_lo > 0))
    error("random_resized_crop_box: scale (", scale_lo, ", ", scale_hi, ") and ratio (", ratio_lo, ", ", ratio_hi,
          ") must be ordered ranges, ratio positive");
  const double area = double(height) * width;
  const double log_lo = std::log(float(ratio_lo)), log_hi = std::log(float(ratio_hi));  // f32, as torch.log
  auto draw_f32 = [&](double lo, double hi) { return float(lo + (hi - lo) * uniform()); };
  auto randint = [&](int n) { return std::min(int(std::floor(uniform() * n)), n - 1); };
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * double(draw_f32(scale_lo, scale_hi));
    const double aspect = double(std::exp(draw_f32(log_lo, log_hi)));
    const int w = round_half_even(std::sqrt(target_area * aspect));
    const int h = round_half_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int top = randint(height - h + 1);
      const int left = randint(width - w + 1);
      return {top, left, h, w};
    }
  }
  // Central fallback: the whole image, its ratio clamped into [ratio_lo, ratio_hi].
  const double in_ratio = double(width) / double(height);
  int w = width, h = height;
  if (in_ratio < ratio_lo) {
    h = round_half_even(w / ratio_lo);
  } else if (in_ratio > ratio_hi) {
    w = round_half_even(h * ratio_hi);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

}  // namespace fm::image

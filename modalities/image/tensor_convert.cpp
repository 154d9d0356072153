// Images to and from CHW float tensors, with torchvision's arithmetic.
#include <algorithm>
#include <cmath>

#include "fm/error.h"
#include "fm/factory.h"
#include "fm/image/transforms.h"

namespace fm::image {

fm::Tensor to_tensor(const Image& img, const std::vector<float>& mean, const std::vector<float>& std) {
  const int C = img.channels, H = img.height, W = img.width;
  if (img.data.size() != size_t(H) * W * C)
    error("to_tensor: image ", H, "x", W, "x", C, " holds ", img.data.size(), " bytes");
  const bool normalize = !mean.empty() || !std.empty();
  if (normalize && (mean.size() != size_t(C) || std.size() != size_t(C)))
    error("to_tensor: ", mean.size(), " means and ", std.size(), " stds for ", C, " channels");
  for (float s : std)
    if (s == 0.0f) error("to_tensor: a std of 0");
  const float inv255 = float(1.0 / 255);  // to_dtype(scale=True) multiplies by f32(1 / 255)
  std::vector<float> chw(img.data.size());
  for (int c = 0; c < C; ++c) {
    float* plane = &chw[size_t(c) * H * W];
    for (size_t i = 0; i < size_t(H) * W; ++i) {
      const float x = float(img.data[i * C + c]) * inv255;
      plane[i] = normalize ? (x - mean[c]) / std[c] : x;
    }
  }
  return fm::tensor(chw, Shape{C, H, W});
}

Image from_tensor(const fm::Tensor& chw) {
  if (chw.dim() != 3 || (chw.size(0) != 1 && chw.size(0) != 3) || !is_floating(chw.dtype()))
    error("from_tensor: expected a floating [C, H, W] tensor with C = 1 or 3, got ", chw.dtype(), " ", chw.shape());
  const int C = int(chw.size(0)), H = int(chw.size(1)), W = int(chw.size(2));
  const std::vector<float> values = chw.to_vector<float>();
  Image img = make_image(H, W, C);
  for (int c = 0; c < C; ++c)
    for (size_t i = 0; i < size_t(H) * W; ++i) {
      const float v = values[size_t(c) * H * W + i] * 255.0f + 0.5f;  // save_image: mul(255).add_(0.5).clamp_(0, 255)
      img.data[i * C + c] = std::isnan(v) ? 0 : uint8_t(std::clamp(v, 0.0f, 255.0f));
    }
  return img;
}

}  // namespace fm::image

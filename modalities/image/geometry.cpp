// Crops and flips: plain copies, equal to torchvision's by construction.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fm/error.h"
#include "fm/image/transforms.h"

namespace fm::image {

Image crop(const Image& img, int top, int left, int height, int width) {
  if (height < 0 || width < 0) error("crop: size ", height, "x", width, " is negative");
  Image out = make_image(height, width, img.channels);
  const int C = img.channels;
  // The rows and columns of the window that fall inside the image.
  const int y0 = std::max(0, -top), y1 = std::min(height, img.height - top);
  const int x0 = std::max(0, -left), x1 = std::min(width, img.width - left);
  if (x1 <= x0) return out;
  for (int y = y0; y < y1; ++y)
    std::memcpy(&out.at(y, x0, 0), &img.at(top + y, left + x0, 0), size_t(x1 - x0) * C);
  return out;
}

Image center_crop(const Image& img, int height, int width) {
  // Larger than the image: torchvision pads (crop - size) // 2 before and
  // takes the padded image whole; smaller: offset round((size - crop) / 2).
  auto offset = [](int size, int crop) {
    return crop > size ? -((crop - size) / 2) : int(std::nearbyint((size - crop) / 2.0));
  };
  return crop(img, offset(img.height, height), offset(img.width, width), height, width);
}

Image hflip(const Image& img) {
  Image out = make_image(img.height, img.width, img.channels);
  const int C = img.channels;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      std::memcpy(&out.at(y, x, 0), &img.at(y, img.width - 1 - x, 0), size_t(C));
  return out;
}

}  // namespace fm::image

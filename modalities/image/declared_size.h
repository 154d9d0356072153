#pragma once
// The width and height an image file's header declares, read before any
// decoding, so a small file claiming a huge image (a decompression bomb) is
// refused before the decoder allocates its pixels.
#include <cstddef>
#include <cstdint>

namespace fm::image {

// PIL's limit (Image.MAX_IMAGE_PIXELS, which errors at twice it): images
// beyond are refused as possible decompression bombs.
constexpr int64_t kMaxImagePixels = 2 * 89478485LL;

// PNG (IHDR), JPEG (the first SOF segment) and BMP headers; false when the
// format is another or the header is not found (the decoder then judges).
bool declared_size(const void* bytes, size_t size, int64_t& width, int64_t& height);

}  // namespace fm::image

// fm::image::decode (OpenCV's imgcodecs: PNG, JPEG, WebP, BMP, ...) on
// arbitrary bytes: an image it returns must hold height x width x 3 bytes.
#include <cstdint>

#include "fm/error.h"
#include "fuzz_util.h"
#include "fm/image/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const fm::image::Image img = fm::image::decode(data, size, "fuzz");
    if (img.height <= 0 || img.width <= 0 || img.channels != 3 ||
        img.data.size() != size_t(img.height) * size_t(img.width) * 3)
      __builtin_trap();
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

// open_idx (MNIST's IDX files, plain or gzip) on arbitrary bytes: the input
// is a 2-byte little-endian length L, L bytes of labels file, then the images
// file (IDX headers hold NUL bytes, so no separator). Every sample is read.
#include <cstdint>
#include <algorithm>
#include <string>
#include <string_view>

#include "fm/data/idx.h"
#include "fm/error.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data + 2), size - 2);
  const size_t n = std::min(all.size(), size_t(data[0]) | size_t(data[1]) << 8);
  const std::string_view labels = all.substr(0, n), images = all.substr(n);
  const std::string labels_path = fm::fuzz::write_file("labels.idx", labels);
  const std::string images_path = fm::fuzz::write_file("images.idx", images);
  try {
    auto source = fm::data::open_idx(images_path, labels_path, size % 2 ? fm::data::fashion_mnist_classes()
                                                                       : std::vector<std::string>{});
    for (int64_t i = 0; i < source->size(); ++i) {
      const fm::data::ImageTextSample s = source->read(i);
      if (s.pixels.size() != size_t(s.height) * size_t(s.width) * size_t(s.channels)) __builtin_trap();
    }
  } catch (const fm::Error& e) {
    fm::fuzz::note(e);
  }
  return 0;
}

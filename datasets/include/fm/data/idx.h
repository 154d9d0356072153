#pragma once
// IDX files (MNIST, Fashion-MNIST): big-endian headers
//   images: 00 00 08 03, then int32 count, rows, cols; then count*rows*cols bytes
//           (08 04 adds a channel count after cols)
//   labels: 00 00 08 01, then int32 count; then count bytes
// read plain or gzip-compressed (detected by the gzip magic, not the name).
// Both files are loaded into memory when opened (Fashion-MNIST's train set
// is 47 MB), so read() is a copy.
#include <memory>
#include <string>
#include <vector>

#include "fm/data/image_text.h"

namespace fm::data {

// Samples carry pixels [rows, cols, channels] (no encoded image), label, and
// caption = class_names[label] (the label's digits when class_names is
// empty); key "idx:<i>", origin "<images path>:<i>". Errors name the file: a
// bad magic, a header that promises more (or fewer) bytes than the file
// holds, counts that differ between the two files, a label without a class
// name.
std::unique_ptr<ImageTextSource> open_idx(const std::string& images_path, const std::string& labels_path,
                                          const std::vector<std::string>& class_names = {});

// The ten classes of Fashion-MNIST, in label order.
const std::vector<std::string>& fashion_mnist_classes();

}  // namespace fm::data

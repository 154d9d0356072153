#pragma once
#include <cstddef>

namespace fm::image {

bool is_jpeg(const void* bytes, size_t size);  // starts with the SOI marker
// Whether the JPEG's marker walk reaches its end-of-image marker. libjpeg
// treats a premature end as a warning and pads the image with gray, so
// OpenCV decodes a truncated JPEG without complaint; this catches it.
bool jpeg_complete(const void* bytes, size_t size);

}  // namespace fm::image

#pragma once
// fm::image::Image: an 8-bit picture in memory, and its files. Decoding and
// encoding go through OpenCV (imgcodecs), which stays out of this header.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fm::image {

// Height x width x channels bytes, row-major, channels interleaved (HWC).
// Channels are RGB for 3, gray for 1: never BGR.
struct Image {
  int height = 0, width = 0, channels = 3;
  std::vector<uint8_t> data;

  uint8_t& at(int y, int x, int c) { return data[(size_t(y) * width + x) * channels + c]; }
  const uint8_t& at(int y, int x, int c) const { return data[(size_t(y) * width + x) * channels + c]; }
};

// A zero-filled image; errors on negative sizes or a channel count outside [1, 4].
Image make_image(int height, int width, int channels = 3);

// Decodes PNG, JPEG, WebP or BMP (told by their first bytes; other formats
// OpenCV reads are refused, as its DICOM reader aborts on bad files) of any
// channel count and 8- or 16-bit depth into 3-channel RGB, as PIL's
// convert("RGB"): gray is repeated, alpha is dropped (not composited), and
// 16-bit samples keep their high byte (v >> 8, as PIL's 16-bit RGB unpacker
// and torchvision's uint16 -> uint8 conversion). EXIF orientation is ignored,
// as PIL and torchvision do. Corrupt, truncated or empty data throws fm::Error
// naming `name` (a path, or a member of an archive).
Image decode(const void* bytes, size_t size, const std::string& name);
Image read(const std::string& path);  // errors name the path

// Encoders take 1 (gray) or 3 (RGB) channels.
std::string encode_png(const Image& img);
std::string encode_jpeg(const Image& img, int quality = 95);  // quality in [0, 100]
// The format comes from the extension (.png, .jpg, .jpeg, any case); the file
// is written atomically (temp file, fsync, rename), so readers see the old
// file or the new one, never a part.
void write(const std::string& path, const Image& img);

}  // namespace fm::image

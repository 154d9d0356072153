// Image files through OpenCV's imgcodecs. imdecode runs with IMREAD_UNCHANGED
// so that this file, not OpenCV's defaults, decides how 16-bit samples and
// alpha become 8-bit RGB (PIL's convert("RGB") rules, see image.h).
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>
#include <filesystem>

#include "fm/error.h"
#include "fm/image/image.h"
#include "fm/io/atomic_file.h"
#include "declared_size.h"
#include "jpeg_complete.h"
#include "../text/read_file.h"

namespace fm::image {
namespace {

// A decoded Mat (any channel count, 8 or 16 bit, OpenCV's BGR order) as RGB.
Image to_rgb(const cv::Mat& decoded, const std::string& name) {
  static const int codes[] = {cv::COLOR_GRAY2RGB, -1, cv::COLOR_BGR2RGB, cv::COLOR_BGRA2RGB};
  cv::Mat src = decoded;
  if (decoded.channels() == 2) {  // gray + alpha: keep the gray plane
    src = cv::Mat();
    cv::extractChannel(decoded, src, 0);
  }
  if (src.channels() < 1 || src.channels() > 4)
    error("image decode: ", name, ": unsupported channel count ", decoded.channels());
  if (src.depth() != CV_8U && src.depth() != CV_16U)
    error("image decode: ", name, ": unsupported sample depth (OpenCV depth ", decoded.depth(), "), expected 8 or 16 bit");
  cv::Mat rgb;
  cv::cvtColor(src, rgb, codes[src.channels() - 1]);
  Image img = make_image(rgb.rows, rgb.cols, 3);
  const size_t row = size_t(rgb.cols) * 3;
  for (int y = 0; y < rgb.rows; ++y) {
    uint8_t* out = img.data.data() + size_t(y) * row;
    if (rgb.depth() == CV_8U) {
      std::memcpy(out, rgb.ptr<uint8_t>(y), row);
    } else {
      const uint16_t* in = rgb.ptr<uint16_t>(y);
      for (size_t i = 0; i < row; ++i) out[i] = uint8_t(in[i] >> 8);
    }
  }
  return img;
}

// The image as an OpenCV Mat in BGR (or gray) order; 1 or 3 channels.
cv::Mat to_bgr(const Image& img, const std::string& op) {
  if (img.channels != 1 && img.channels != 3)
    error(op, ": ", img.channels, " channels, expected 1 (gray) or 3 (RGB)");
  if (img.height <= 0 || img.width <= 0 || img.data.size() != size_t(img.height) * img.width * img.channels)
    error(op, ": image ", img.height, "x", img.width, "x", img.channels, " holds ", img.data.size(), " bytes");
  const cv::Mat view(img.height, img.width, CV_8UC(img.channels), const_cast<uint8_t*>(img.data.data()));
  if (img.channels == 1) return view;
  cv::Mat bgr;
  cv::cvtColor(view, bgr, cv::COLOR_RGB2BGR);
  return bgr;
}

std::string encode(const Image& img, const char* ext, const std::vector<int>& params, const std::string& op) {
  const cv::Mat bgr = to_bgr(img, op);
  std::vector<uint8_t> out;
  try {
    if (!cv::imencode(ext, bgr, out, params)) error(op, ": OpenCV could not encode the image");
  } catch (const cv::Exception& e) {
    error(op, ": ", e.what());
  }
  return std::string(out.begin(), out.end());
}

std::string encode_jpeg(const Image& img, int quality, const std::string& op) {
  if (quality < 0 || quality > 100) error(op, ": quality ", quality, " outside [0, 100]");
  return encode(img, ".jpg", {cv::IMWRITE_JPEG_QUALITY, quality}, op);
}

}  // namespace

Image make_image(int height, int width, int channels) {
  if (height < 0 || width < 0 || channels < 1 || channels > 4)
    error("image: invalid size ", height, "x", width, "x", channels);
  Image img;
  img.height = height, img.width = width, img.channels = channels;
  img.data.assign(size_t(height) * width * channels, 0);
  return img;
}

// PNG, JPEG, WebP or BMP by their first bytes (OpenCV's own signatures), and
// no DICOM signature ("DICM" at byte 128, which OpenCV also looks for): other
// formats never reach OpenCV, whose DICOM reader (GDCM) abort()s or allocates
// gigabytes on crafted files (tests/fuzz/regressions/image_decode/).
bool known_format(const void* bytes, size_t size) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  if (size >= 132 && std::memcmp(p + 128, "DICM", 4) == 0) return false;
  return (size >= 8 && std::memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0) || (size >= 3 && std::memcmp(p, "\xff\xd8\xff", 3) == 0) ||
         (size >= 12 && std::memcmp(p, "RIFF", 4) == 0 && std::memcmp(p + 8, "WEBP", 4) == 0) ||
         (size >= 2 && p[0] == 'B' && p[1] == 'M');
}

Image decode(const void* bytes, size_t size, const std::string& name) {
  if (size == 0) error("image decode: ", name, ": empty file");
  if (size > size_t(INT_MAX)) error("image decode: ", name, ": ", size, " bytes is too large");
  if (!known_format(bytes, size)) error("image decode: ", name, ": not a PNG/JPEG/WebP/BMP image");
  int64_t w = 0, h = 0;
  // w * h > limit, without the product (PNG's 32-bit sides would overflow it)
  if (declared_size(bytes, size, w, h) && w > 0 && h > kMaxImagePixels / w)
    error("image decode: ", name, ": declares ", w, " x ", h, " pixels, more than the limit of ", kMaxImagePixels,
          " (a decompression bomb?)");
  const cv::Mat buffer(1, int(size), CV_8U, const_cast<void*>(bytes));
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception& e) {
    error("image decode: ", name, ": ", e.what());
  }
  if (decoded.empty()) error("image decode: ", name, ": corrupt, truncated or not a PNG/JPEG/WebP/BMP image");
  // libjpeg pads a truncated JPEG with gray and only warns: check for the end.
  if (is_jpeg(bytes, size) && !jpeg_complete(bytes, size))
    error("image decode: ", name, ": truncated JPEG (no end-of-image marker)");
  return to_rgb(decoded, name);
}

Image read(const std::string& path) {
  const std::string bytes = text::read_file(path, "image read");
  return decode(bytes.data(), bytes.size(), path);
}

std::string encode_png(const Image& img) { return encode(img, ".png", {}, "encode_png"); }

std::string encode_jpeg(const Image& img, int quality) { return encode_jpeg(img, quality, "encode_jpeg"); }

void write(const std::string& path, const Image& img) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const std::string op = "image write: " + path;
  std::string bytes;
  if (ext == ".png") {
    bytes = encode(img, ".png", {}, op);
  } else if (ext == ".jpg" || ext == ".jpeg") {
    bytes = encode_jpeg(img, 95, op);
  } else {
    error(op, ": unknown extension '", ext, "' (expected .png, .jpg or .jpeg)");
  }
  io::AtomicFile file(path, "image write");
  file.write(bytes.data(), bytes.size());
  file.commit();
}

}  // namespace fm::image

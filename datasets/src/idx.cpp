#include "fm/data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

#include "fm/error.h"

namespace fm::data {
namespace {

uint32_t big_endian(const std::string& b, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(b.data() + at);
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// The file size (header and data) that the header read so far promises:
// unknown (UINT64_MAX) until the dims are in, 0 if their product overflows.
uint64_t promised_size(const std::string& b) {
  if (b.size() < 4) return UINT64_MAX;
  const size_t header = 4 + 4 * size_t((unsigned char)b[3]);
  if (b.size() < header) return UINT64_MAX;
  uint64_t size = 1;
  for (size_t at = 4; at < header; at += 4)
    if (__builtin_mul_overflow(size, uint64_t(big_endian(b, at)), &size)) return 0;
  return __builtin_add_overflow(size, uint64_t(header), &size) ? 0 : size;
}

// The file, gunzipped when it starts with the gzip magic (zlib's gz reader
// passes files without it through unchanged). Reading stops once past what
// the header promises, so a gzip bomb is not inflated into memory.
std::string load(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) error("open_idx: cannot open '", path, "'");
  std::string bytes;
  char chunk[1 << 16];
  while (bytes.size() <= promised_size(bytes)) {
    const int n = gzread(f, chunk, sizeof chunk);
    if (n < 0) {
      int code = 0;
      const std::string why = gzerror(f, &code);
      gzclose(f);
      error("open_idx: ", path, ": cannot read: ", why);
    }
    if (n == 0) break;
    bytes.append(chunk, size_t(n));
  }
  // A gzip stream cut short reads as a short file without an error from
  // gzread; gzclose_r reports it (not when reading stopped early).
  const bool stopped = bytes.size() > promised_size(bytes);
  const int rc = gzclose(f);
  if (!stopped && rc != Z_OK && rc != Z_BUF_ERROR) error("open_idx: ", path, ": cannot read (zlib error ", rc, ")");
  if (!stopped && rc == Z_BUF_ERROR) error("open_idx: ", path, ": the gzip stream is truncated");
  return bytes;
}

// An IDX file of unsigned bytes: its dims and where the data starts, checked
// against what the file holds.
struct Idx {
  std::string bytes;
  std::vector<int64_t> dims;
  size_t data = 0;
};

Idx parse(const std::string& path, const std::vector<int>& ndims) {
  Idx idx{load(path), {}, 0};
  const std::string& b = idx.bytes;
  if (b.size() < 4) error("open_idx: ", path, ": ", b.size(), " bytes, too short for an IDX header");
  const int type = (unsigned char)b[2], ndim = (unsigned char)b[3];
  if (b[0] != 0 || b[1] != 0 || type != 0x08 || std::find(ndims.begin(), ndims.end(), ndim) == ndims.end()) {
    char magic[16];
    std::snprintf(magic, sizeof magic, "0x%08X", big_endian(b, 0));
    std::string want;
    for (int n : ndims) want += (want.empty() ? "" : " or ") + std::string("0x0000080") + std::to_string(n);
    error("open_idx: ", path, ": bad magic ", magic, " (expected ", want, ": unsigned bytes, ",
          ndims.size() == 1 && ndims[0] == 1 ? "labels" : "images", ")");
  }
  idx.data = 4 + 4 * size_t(ndim);
  if (b.size() < idx.data) error("open_idx: ", path, ": ", b.size(), " bytes, too short for the IDX header");
  uint64_t expected = 1;
  bool overflow = false;
  std::string shape;
  for (int d = 0; d < ndim; ++d) {
    idx.dims.push_back(int64_t(big_endian(b, 4 + 4 * size_t(d))));
    overflow |= __builtin_mul_overflow(expected, uint64_t(idx.dims.back()), &expected);
    shape += (shape.empty() ? "" : " x ") + std::to_string(idx.dims.back());
  }
  if (overflow) error("open_idx: ", path, ": the header's dims ", shape, " need more than 2^64 bytes");
  if (b.size() - idx.data != expected)
    error("open_idx: ", path, ": the header promises ", shape, " = ", expected, " bytes of data but the file holds ",
          b.size() - idx.data, b.size() - idx.data > expected ? " or more" : "");  // load() stops past the promise
  return idx;
}

class IdxSource final : public ImageTextSource {
 public:
  IdxSource(std::string path, Idx images, Idx labels, std::vector<std::string> classes)
      : path_(std::move(path)), images_(std::move(images)), labels_(std::move(labels)), classes_(std::move(classes)) {}

  int64_t size() const override { return images_.dims[0]; }
  std::string name() const override { return path_; }

  ImageTextSample read(int64_t index) const override {
    FM_CHECK(index >= 0 && index < size(), "idx ", path_, ": index ", index, " is not in [0, ", size(), ")");
    ImageTextSample s;
    s.key = "idx:" + std::to_string(index);
    s.origin = path_ + ":" + std::to_string(index);
    s.height = int(images_.dims[1]);
    s.width = int(images_.dims[2]);
    s.channels = images_.dims.size() == 4 ? int(images_.dims[3]) : 1;
    const size_t n = size_t(s.height) * size_t(s.width) * size_t(s.channels);
    const char* p = images_.bytes.data() + images_.data + size_t(index) * n;
    s.pixels.assign(p, p + n);
    s.label = (unsigned char)labels_.bytes[labels_.data + size_t(index)];
    s.caption = classes_.empty() ? std::to_string(s.label) : classes_[size_t(s.label)];
    return s;
  }

 private:
  std::string path_;
  Idx images_, labels_;
  std::vector<std::string> classes_;
};

}  // namespace

std::unique_ptr<ImageTextSource> open_idx(const std::string& images_path, const std::string& labels_path,
                                          const std::vector<std::string>& class_names) {
  Idx images = parse(images_path, {3, 4});
  Idx labels = parse(labels_path, {1});
  if (images.dims[0] != labels.dims[0])
    error("open_idx: ", images_path, " holds ", images.dims[0], " images but ", labels_path, " ", labels.dims[0],
          " labels");
  if (!class_names.empty()) {
    for (size_t i = 0; i < size_t(labels.dims[0]); ++i) {
      const size_t label = (unsigned char)labels.bytes[labels.data + i];
      if (label >= class_names.size())
        error("open_idx: ", labels_path, ": label ", label, " of item ", i, " has no class name (", class_names.size(),
              " given)");
    }
  }
  return std::make_unique<IdxSource>(images_path, std::move(images), std::move(labels), class_names);
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> classes = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return classes;
}

}  // namespace fm::data

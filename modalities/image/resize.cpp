// Bilinear resize as torchvision computes it (torch's upsample_bilinear2d,
// align_corners=False, with or without antialias), written out here because
// OpenCV's INTER_LINEAR never widens its filter when shrinking (it aliases)
// and INTER_AREA is a box filter: neither equals torchvision's antialiased
// bilinear, a PIL-style triangle filter whose support grows with the
// downscale factor. Each output element is an f32 weighted sum over its taps,
// horizontal pass first; the weights are torch's float weights bit for bit
// and the sums run in torch's order, so results differ from torchvision's
// float path only where torch's build fuses multiply-adds (it varies with
// the CPU and compiler) moves a value across a rounding tie.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fm/error.h"
#include "fm/image/transforms.h"

namespace fm::image {
namespace {

// For each output index, `taps` input indices and their weights.
struct Taps {
  int taps = 0;
  std::vector<int> index;      // [out][taps]
  std::vector<float> weight;  // [out][taps]; unused taps have weight 0 and index 0
};

// torch's _compute_indices_min_size_weights_aa: center = scale * (i + 0.5),
// support = scale when shrinking (else 1), triangle filter evaluated at
// (j - center + 0.5) / max(scale, 1), normalised to sum 1. The mix of float
// and double below is torch's (float weights, double literals).
Taps antialias_taps(int in, int out) {
  const float scale = float(in) / float(out);
  const float support = scale >= 1.0f ? scale : 1.0f;
  const float invscale = scale >= 1.0f ? float(1.0 / scale) : 1.0f;
  Taps t;
  t.taps = int(std::ceil(support)) * 2 + 1;
  t.index.assign(size_t(out) * t.taps, 0);
  t.weight.assign(size_t(out) * t.taps, 0.0f);
  for (int i = 0; i < out; ++i) {
    const float center = float(scale * (i + 0.5));
    const int64_t xmin = std::max<int64_t>(int64_t((center - support) + 0.5), 0);
    int64_t xsize = std::min<int64_t>(int64_t((center + support) + 0.5), in) - xmin;
    xsize = std::clamp<int64_t>(xsize, 0, t.taps);
    int* index = &t.index[size_t(i) * t.taps];
    float* weight = &t.weight[size_t(i) * t.taps];
    float total = 0.0f;
    for (int64_t j = 0; j < xsize; ++j) {
      float x = float((float(j + xmin) - center + 0.5) * invscale);
      x = std::fabs(x);
      const float w = x < 1.0f ? float(1.0 - x) : 0.0f;
      index[j] = int(xmin + j);
      weight[j] = w;
      total += w;
    }
    if (total != 0.0f)
      for (int64_t j = 0; j < xsize; ++j) weight[j] /= total;
  }
  return t;
}

// torch's compute_indices_weights_linear: source = max(scale * (i + 0.5) - 0.5, 0),
// the two neighbours (the last pixel twice at the border), weights 1 - l and l.
Taps linear_taps(int in, int out) {
  const float scale = float(in) / float(out);
  Taps t;
  t.taps = 2;
  t.index.assign(size_t(out) * 2, 0);
  t.weight.assign(size_t(out) * 2, 0.0f);
  for (int i = 0; i < out; ++i) {
    const float source = std::max(scale * (float(i) + 0.5f) - 0.5f, 0.0f);
    const int64_t i0 = std::min<int64_t>(int64_t(std::floor(source)), in - 1);
    const float lambda = std::min(std::max(source - float(i0), 0.0f), 1.0f);
    t.index[size_t(i) * 2] = int(i0);
    t.index[size_t(i) * 2 + 1] = int(i0 + (i0 < in - 1 ? 1 : 0));
    t.weight[size_t(i) * 2] = 1.0f - lambda;
    t.weight[size_t(i) * 2 + 1] = lambda;
  }
  return t;
}

Taps make_taps(int in, int out, bool antialias) { return antialias ? antialias_taps(in, out) : linear_taps(in, out); }

// out[o] = sum_j src[index_j * stride] * weight_j for `lanes` interleaved
// values per position (channels, or a whole row of them), in tap order.
void resample(const float* src, float* dst, const Taps& t, int out, int64_t stride, int64_t lanes) {
  for (int o = 0; o < out; ++o) {
    const int* index = &t.index[size_t(o) * t.taps];
    const float* weight = &t.weight[size_t(o) * t.taps];
    float* d = dst + o * lanes;
    const float* s0 = src + index[0] * stride;
    for (int64_t l = 0; l < lanes; ++l) d[l] = s0[l] * weight[0];
    for (int j = 1; j < t.taps; ++j) {
      if (weight[j] == 0.0f) continue;  // adds exactly +0 (and pads the table)
      const float* s = src + index[j] * stride;
      for (int64_t l = 0; l < lanes; ++l) d[l] += s[l] * weight[j];
    }
  }
}

}  // namespace

Image resize(const Image& img, int height, int width, bool antialias) {
  if (height <= 0 || width <= 0)
    error("resize: output size ", height, "x", width, " must be positive");
  if (img.height <= 0 || img.width <= 0)
    error("resize: empty image ", img.height, "x", img.width);
  if (height == img.height && width == img.width) return img;
  const int C = img.channels;
  std::vector<float> cur(img.data.begin(), img.data.end());  // [H][W][C]
  int h = img.height, w = img.width;
  if (width != w) {  // horizontal pass first, as torch
    const Taps t = make_taps(w, width, antialias);
    std::vector<float> next(size_t(h) * width * C);
    for (int y = 0; y < h; ++y)
      resample(&cur[size_t(y) * w * C], &next[size_t(y) * width * C], t, width, C, C);
    cur.swap(next);
    w = width;
  }
  if (height != h) {
    const Taps t = make_taps(h, height, antialias);
    std::vector<float> next(size_t(height) * w * C);
    resample(cur.data(), next.data(), t, height, int64_t(w) * C, int64_t(w) * C);
    cur.swap(next);
    h = height;
  }
  Image out = make_image(height, width, C);
  for (size_t i = 0; i < cur.size(); ++i)  // round half to even, as torch's round()
    out.data[i] = uint8_t(std::clamp(std::nearbyint(cur[i]), 0.0f, 255.0f));
  return out;
}

Image resize_shorter(const Image& img, int size, bool antialias) {
  if (size <= 0) error("resize_shorter: size ", size, " must be positive");
  const int64_t h = img.height, w = img.width;
  if (h <= 0 || w <= 0) error("resize_shorter: empty image ", h, "x", w);
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  // Python's int(size * long / short): a double quotient, truncated.
  const int other = int(double(int64_t(size) * longer) / double(shorter));
  return w <= h ? resize(img, other, size, antialias) : resize(img, size, other, antialias);
}

}  // namespace fm::image

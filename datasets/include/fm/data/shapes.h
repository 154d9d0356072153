#pragma once
// The captioned-shapes generator (../shared/specs/captioned-shapes.md): one or
// two flat-coloured circles, squares or triangles on black, with a caption
// from a 27-word grammar such as "a small blue square above a large green
// triangle". Images are raw 8-bit RGB; writing PNGs and captions.jsonl is the
// job of `fm prepare shapes`.
//
// Sample i of a data set is a pure function of (options, i): each sample
// draws from its own Philox stream keyed by (seed, split, i), so samples can
// be made in any order, on any number of threads, and never touch
// fm::default_generator().
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

// One shape: words as in the caption; centre (cx, cy) of its s x s bounding
// box, in pixels, origin at the image's top-left corner, y downwards.
struct Shape2D {
  std::string type;       // circle | square | triangle
  std::string colour;     // red | green | blue | yellow | magenta | cyan | white | orange
  std::string size_word;  // small | large
  double cx = 0, cy = 0, s = 0;
};

struct ShapesSample {
  int width = 0;             // W: the image is W x W
  std::vector<uint8_t> rgb;  // W * W * 3 bytes, row-major HWC
  std::string caption;
  std::vector<Shape2D> shapes;  // in caption order: A, then B for two-shape captions
};

struct ShapesOptions {
  int width = 32;               // the spec's variants are 32 and 64; at least 16
  std::string split = "train";  // "train" never shows a held-out colour-type pair; "test" may
  uint64_t seed = 0;
  int supersample = 4;  // k x k samples per pixel give the covered area (1 = hard edges)
};

ShapesSample generate_shape_sample(const ShapesOptions& options, int64_t index);

// The 27 words of the caption grammar, each once.
const std::vector<std::string>& shapes_vocabulary();

// The colour-type pairs that never appear in `train`: red triangle, green
// circle, blue square, white triangle.
bool is_held_out_pair(const std::string& colour, const std::string& type);

}  // namespace fm::data

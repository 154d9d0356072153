#include <algorithm>
#include <array>
#include <cmath>

#include "fm/data/shapes.h"
#include "fm/error.h"
#include "fm/random.h"
#include "sample_stream.h"

namespace fm::data {
namespace {

struct Colour {
  const char* word;
  std::array<double, 3> rgb;
};
constexpr std::array<Colour, 8> kColours{{{"red", {255, 0, 0}},
                                          {"green", {0, 255, 0}},
                                          {"blue", {0, 0, 255}},
                                          {"yellow", {255, 255, 0}},
                                          {"magenta", {255, 0, 255}},
                                          {"cyan", {0, 255, 255}},
                                          {"white", {255, 255, 255}},
                                          {"orange", {255, 128, 0}}}};
constexpr std::array<const char*, 3> kTypes{"circle", "square", "triangle"};
struct SizeRange {
  const char* word;
  double lo, hi;  // s / W
};
constexpr std::array<SizeRange, 2> kSizes{{{"small", 0.16, 0.22}, {"large", 0.34, 0.40}}};
// Cells row-major: row = cell / 3 (top to bottom), column = cell % 3.
constexpr std::array<const char*, 9> kPositions{"in the top left",    "at the top",    "in the top right",
                                                "on the left",        "in the center", "on the right",
                                                "in the bottom left", "at the bottom", "in the bottom right"};
enum Relation { kAbove, kBelow, kLeftOf, kRightOf };
constexpr std::array<const char*, 4> kRelations{"above", "below", "to the left of", "to the right of"};

constexpr double kCellInset = 0.05;  // centres stay this far (x W) inside their cell
constexpr double kGap = 0.06;        // least gap (x W) between two boxes along the relation's axis


struct Words {
  int type, colour, size;
};

// Type, colour and size, uniform; colour uniform over the seven others when
// `other_colour` is set; in train, held-out pairs are drawn again.
Words draw_words(SampleStream& rng, bool train, int other_colour) {
  for (;;) {
    Words w{};
    w.type = rng.below(3);
    w.colour = other_colour < 0 ? rng.below(8) : (other_colour + 1 + rng.below(7)) % 8;
    w.size = rng.below(2);
    if (!train || !is_held_out_pair(kColours[size_t(w.colour)].word, kTypes[size_t(w.type)])) return w;
  }
}

Shape2D make_shape(const Words& w, double s) {
  return {kTypes[size_t(w.type)], kColours[size_t(w.colour)].word, kSizes[size_t(w.size)].word, 0, 0, s};
}

// The spec's reference placement for `above`, in axis-neutral terms: u runs
// along the relation's axis, v across it; shape 1 comes first along u.
// Returns {u1, v1, u2, v2}.
std::array<double, 4> place_pair(SampleStream& rng, double W, double s1, double s2) {
  const double gap = kGap * W;
  for (;;) {
    const double u1 = rng.uniform(s1 / 2 + 1, W - s2 / 2 - 1 - (s1 + s2) / 2 - gap);
    const double u2 = rng.uniform(u1 + (s1 + s2) / 2 + gap, W - s2 / 2 - 1);
    const double v1 = rng.uniform(s1 / 2 + 1, W - s1 / 2 - 1);
    const double d = u2 - u1;
    const double lo = std::max(v1 - d / 2, s2 / 2 + 1), hi = std::min(v1 + d / 2, W - s2 / 2 - 1);
    if (lo <= hi) return {u1, v1, u2, rng.uniform(lo, hi)};
  }
}

bool inside(const Shape2D& shape, double x, double y) {
  const double dx = x - shape.cx, dy = y - shape.cy, h = shape.s / 2;
  if (shape.type == "circle") return dx * dx + dy * dy <= h * h;
  if (shape.type == "square") return std::fabs(dx) <= h && std::fabs(dy) <= h;
  const double depth = dy + h;  // triangle: below the apex; its half-width there is depth / 2
  return depth >= 0 && depth <= shape.s && std::fabs(dx) <= depth / 2;
}

// Adds alpha * colour into `acc` (W x W x 3), alpha the fraction of the k x k
// sample points of each pixel that fall inside the shape.
void paint(const Shape2D& shape, const std::array<double, 3>& colour, int W, int k, std::vector<double>& acc) {
  const double h = shape.s / 2;
  const int x0 = std::max(0, int(std::floor(shape.cx - h))), x1 = std::min(W, int(std::ceil(shape.cx + h)));
  const int y0 = std::max(0, int(std::floor(shape.cy - h))), y1 = std::min(W, int(std::ceil(shape.cy + h)));
  for (int j = y0; j < y1; ++j)
    for (int i = x0; i < x1; ++i) {
      int hits = 0;
      for (int b = 0; b < k; ++b)
        for (int a = 0; a < k; ++a) hits += inside(shape, i + (a + 0.5) / k, j + (b + 0.5) / k);
      const double alpha = double(hits) / (k * k);
      for (int c = 0; c < 3; ++c) acc[(size_t(j) * W + i) * 3 + c] += alpha * colour[size_t(c)];
    }
}

const Colour& colour_of(const std::string& word) {
  for (const Colour& c : kColours)
    if (word == c.word) return c;
  error("shapes: unknown colour '", word, "'");
}

std::string describe(const Shape2D& s) { return "a " + s.size_word + " " + s.colour + " " + s.type; }

}  // namespace

bool is_held_out_pair(const std::string& colour, const std::string& type) {
  return (colour == "red" && type == "triangle") || (colour == "green" && type == "circle") ||
         (colour == "blue" && type == "square") || (colour == "white" && type == "triangle");
}

const std::vector<std::string>& shapes_vocabulary() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> v{"a", "small", "large"};
    for (const Colour& c : kColours) v.emplace_back(c.word);
    for (const char* t : kTypes) v.emplace_back(t);
    for (const char* w : {"in", "the", "top", "left", "at", "right", "on", "center", "bottom"}) v.emplace_back(w);
    for (const char* w : {"above", "below", "to", "of"}) v.emplace_back(w);
    return v;
  }();
  return words;
}

ShapesSample generate_shape_sample(const ShapesOptions& o, int64_t index) {
  FM_CHECK(o.width >= 16, "generate_shape_sample: width ", o.width, " is below 16, too small for two shapes");
  FM_CHECK(o.split == "train" || o.split == "test", "generate_shape_sample: split '", o.split,
           "' is neither 'train' nor 'test'");
  FM_CHECK(o.supersample >= 1 && o.supersample <= 16, "generate_shape_sample: supersample ", o.supersample,
           " is not in [1, 16]");
  FM_CHECK(index >= 0, "generate_shape_sample: index ", index, " is negative");
  const bool train = o.split == "train";
  const double W = o.width;
  SampleStream rng(o.seed, train ? 0 : 1, index);

  ShapesSample out;
  out.width = o.width;
  const bool two = rng.below(2) == 1;
  const Words a = draw_words(rng, train, -1);
  std::vector<Words> words{a};
  if (two) words.push_back(draw_words(rng, train, a.colour));
  for (const Words& w : words) {
    const SizeRange& r = kSizes[size_t(w.size)];
    out.shapes.push_back(make_shape(w, rng.uniform(r.lo * W, r.hi * W)));
  }

  if (!two) {
    Shape2D& s = out.shapes[0];
    const int cell = rng.below(9);
    const double third = W / 3, inset = kCellInset * W, lo = s.s / 2 + 1, hi = W - s.s / 2 - 1;
    const int col = cell % 3, row = cell / 3;
    s.cx = rng.uniform(std::max(col * third + inset, lo), std::min((col + 1) * third - inset, hi));
    s.cy = rng.uniform(std::max(row * third + inset, lo), std::min((row + 1) * third - inset, hi));
    out.caption = describe(s) + " " + kPositions[size_t(cell)];
  } else {
    const int relation = rng.below(4);
    const bool a_first = relation == kAbove || relation == kLeftOf;  // A higher or further left
    Shape2D& first = out.shapes[a_first ? 0 : 1];
    Shape2D& second = out.shapes[a_first ? 1 : 0];
    const auto [u1, v1, u2, v2] = place_pair(rng, W, first.s, second.s);
    if (relation == kAbove || relation == kBelow) {
      first.cy = u1, first.cx = v1, second.cy = u2, second.cx = v2;
    } else {
      first.cx = u1, first.cy = v1, second.cx = u2, second.cy = v2;
    }
    out.caption = describe(out.shapes[0]) + " " + kRelations[size_t(relation)] + " " + describe(out.shapes[1]);
  }

  std::vector<double> acc(size_t(o.width) * o.width * 3, 0.0);
  for (const Shape2D& s : out.shapes) paint(s, colour_of(s.colour).rgb, o.width, o.supersample, acc);
  out.rgb.resize(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) out.rgb[i] = uint8_t(std::lround(std::min(acc[i], 255.0)));
  return out;
}

}  // namespace fm::data

// Written apart from shapes_generator.cpp on purpose: the tables below are
// copied from the spec, not shared, so a mistake in one side shows up as a
// disagreement instead of being repeated by both.
#include "fm/data/shapes_checker.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>

#include "fm/error.h"

namespace fm::data {
namespace {

struct PaletteColour {
  const char* word;
  std::array<double, 3> rgb;
};
constexpr std::array<PaletteColour, 8> kPalette{{{"red", {255, 0, 0}},
                                                 {"green", {0, 255, 0}},
                                                 {"blue", {0, 0, 255}},
                                                 {"yellow", {255, 255, 0}},
                                                 {"magenta", {255, 0, 255}},
                                                 {"cyan", {0, 255, 255}},
                                                 {"white", {255, 255, 255}},
                                                 {"orange", {255, 128, 0}}}};
const std::vector<std::string> kSizeWords{"small", "large"};
const std::vector<std::string> kTypeWords{"circle", "square", "triangle"};
// Row-major over the 3 x 3 grid: index = 3 * row + column.
const std::vector<std::string> kPositionWords{"in the top left",    "at the top",    "in the top right",
                                              "on the left",        "in the center", "on the right",
                                              "in the bottom left", "at the bottom", "in the bottom right"};
const std::vector<std::string> kRelationWords{"above", "below", "to the left of", "to the right of"};

// A pixel is inside a shape (its core) when its brightest channel reaches half
// of the image's brightest, or at least kMinCoreLevel (so a dim image still
// has shapes, and a blank one has none).
constexpr int kMinCoreLevel = 64;
constexpr int kEdgeLevel = 16;       // dimmer pixels down to this join a neighbouring shape as its edge
constexpr int kEdgeReach = 2;        // pixels; covers the thin apex of a triangle
constexpr double kLargeSide = 0.28;  // x W: the small / large boundary
// Type thresholds. An upward triangle's vertical mass has skewness -0.57
// (-0.45 or below for a small one at W = 32); circles and squares have 0,
// and a blur keeps them at 0 while pulling a triangle towards 0 (-0.2 for a
// small one after a Gaussian blur of sigma 0.8 px). The fill of a circle is
// pi / 4 (0.77 - 0.83 as measured), of a square 1; blur raises a circle's.
constexpr double kTriangleSkew = -0.17;  // below: a triangle
constexpr double kSquareFill = 0.92;     // otherwise at or above: a square, else a circle

bool contains(const std::vector<std::string>& words, const std::string& w) {
  return std::find(words.begin(), words.end(), w) != words.end();
}

std::string join(const std::vector<std::string>& words, size_t from, size_t to) {
  std::string s;
  for (size_t i = from; i < to; ++i) s += (i > from ? " " : "") + words[i];
  return s;
}

class CaptionParser {
 public:
  explicit CaptionParser(const std::string& caption) : caption_(caption) {
    size_t start = 0;
    for (;;) {
      const size_t end = caption.find(' ', start);
      words_.push_back(caption.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (words_.back().empty()) fail("words must be separated by single spaces");
      if (end == std::string::npos) break;
      start = end + 1;
    }
  }

  ParsedCaption parse() {
    ParsedCaption p;
    p.shapes.push_back(shape_at(0));
    const std::string rest = join(words_, 4, words_.size());
    if (rest.empty()) fail("it names no position or relation after the first shape");
    if (contains(kPositionWords, rest)) {
      p.position = rest;
      return p;
    }
    for (const std::string& relation : kRelationWords) {
      const size_t n = size_t(std::count(relation.begin(), relation.end(), ' ')) + 1;
      if (words_.size() == 4 + n + 4 && join(words_, 4, 4 + n) == relation) {
        p.relation = relation;
        p.shapes.push_back(shape_at(4 + n));
        return p;
      }
    }
    fail("'", rest, "' is neither a position nor a relation followed by a shape");
  }

 private:
  CaptionShape shape_at(size_t i) {
    if (words_.size() < i + 4) fail("it ends before a shape is complete");
    if (words_[i] != "a") fail("expected 'a', found '", words_[i], "'");
    CaptionShape s{words_[i + 1], words_[i + 2], words_[i + 3]};
    if (!contains(kSizeWords, s.size)) fail("'", s.size, "' is not a size (small, large)");
    const bool colour = std::any_of(kPalette.begin(), kPalette.end(), [&](auto& c) { return s.colour == c.word; });
    if (!colour) fail("'", s.colour, "' is not a colour");
    if (!contains(kTypeWords, s.type)) fail("'", s.type, "' is not a shape type (circle, square, triangle)");
    return s;
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    error("shapes caption '", caption_, "': ", parts...);
  }

  const std::string& caption_;
  std::vector<std::string> words_;
};

int brightness(const uint8_t* px) { return std::max({px[0], px[1], px[2]}); }

// Labels (1, 2, ...) of the shapes' cores and edges; 0 is background.
std::vector<int> label_shapes(const uint8_t* rgb, int W, int* count) {
  const int N = W * W;
  std::vector<int> label(size_t(N), 0);
  // Smaller cores are specks: a quarter of the smallest shape (a triangle of side 0.16 W).
  const int min_core = int(std::ceil(0.25 * 0.5 * (0.16 * W) * (0.16 * W)));
  int peak = 0;
  for (int p = 0; p < N; ++p) peak = std::max(peak, brightness(rgb + 3 * p));
  const int core_level = std::max(kMinCoreLevel, (peak + 1) / 2);
  int next = 0;
  std::vector<int> stack, members;
  for (int start = 0; start < N; ++start) {
    if (label[size_t(start)] != 0 || brightness(rgb + 3 * start) < core_level) continue;
    ++next;
    members.clear();
    stack.assign(1, start);
    label[size_t(start)] = next;
    while (!stack.empty()) {
      const int p = stack.back();
      stack.pop_back();
      members.push_back(p);
      const int x = p % W, y = p / W;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int nx = x + dx, ny = y + dy, q = ny * W + nx;
          if (nx < 0 || ny < 0 || nx >= W || ny >= W || label[size_t(q)] != 0) continue;
          if (brightness(rgb + 3 * q) < core_level) continue;
          label[size_t(q)] = next;
          stack.push_back(q);
        }
    }
    if (int(members.size()) < min_core) {
      for (int p : members) label[size_t(p)] = -1;  // a speck: neither a shape nor background to grow into
      --next;
    }
  }
  for (int& l : label) l = std::max(l, 0);
  // Dim edge pixels join the first labelled 8-neighbour, one ring per pass.
  for (int pass = 0; pass < kEdgeReach; ++pass) {
    std::vector<int> grown = label;
    for (int p = 0; p < N; ++p) {
      if (label[size_t(p)] != 0 || brightness(rgb + 3 * p) < kEdgeLevel) continue;
      const int x = p % W, y = p / W;
      for (int dy = -1; dy <= 1 && grown[size_t(p)] == 0; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= W || ny >= W) continue;
          if (const int l = label[size_t(ny * W + nx)]; l != 0) {
            grown[size_t(p)] = l;
            break;
          }
        }
    }
    label = std::move(grown);
  }
  *count = next;
  return label;
}

std::string nearest_colour(std::array<double, 3> mean) {
  const double top = std::max({mean[0], mean[1], mean[2], 1.0});
  for (double& c : mean) c *= 255.0 / top;  // undo dimming and anti-aliasing
  const PaletteColour* best = &kPalette[0];
  double best_d = INFINITY;
  for (const PaletteColour& c : kPalette) {
    double d = 0;
    for (int i = 0; i < 3; ++i) d += (mean[size_t(i)] - c.rgb[size_t(i)]) * (mean[size_t(i)] - c.rgb[size_t(i)]);
    if (d < best_d) best_d = d, best = &c;
  }
  return best->word;
}

std::string classify_type(double fill, double skew) {
  if (skew < kTriangleSkew) return "triangle";
  return fill >= kSquareFill ? "square" : "circle";
}

// The side s of a shape's box from the second moments of its mass, which a
// blur changes little: var_x = var_y = s^2 / 12 for a square, s^2 / 16 for a
// disc; var_x = s^2 / 24 and var_y = s^2 / 18 for the triangle.
double side_from_moments(const std::string& type, double var_x, double var_y) {
  if (type == "square") return std::sqrt(12 * (var_x + var_y) / 2);
  if (type == "circle") return std::sqrt(16 * (var_x + var_y) / 2);
  return (std::sqrt(24 * var_x) + std::sqrt(18 * var_y)) / 2;
}

DetectedShape measure(const uint8_t* rgb, int W, const std::vector<int>& label, int l) {
  int peak = 1;
  for (int p = 0; p < W * W; ++p)
    if (label[size_t(p)] == l) peak = std::max(peak, brightness(rgb + 3 * p));
  // Coverage relative to the shape's own peak, so a dimmed shape is measured like a bright one.
  auto alpha = [&](int p) { return std::min(1.0, double(brightness(rgb + 3 * p)) / peak); };
  std::vector<double> col_max(size_t(W), 0.0), row_max(size_t(W), 0.0);
  double area = 0, sx = 0, sy = 0;
  std::array<double, 3> colour_sum{};
  int bright = 0;
  for (int p = 0; p < W * W; ++p) {
    if (label[size_t(p)] != l) continue;
    const int x = p % W, y = p / W;
    const double a = alpha(p);
    area += a, sx += a * (x + 0.5), sy += a * (y + 0.5);
    col_max[size_t(x)] = std::max(col_max[size_t(x)], a);
    row_max[size_t(y)] = std::max(row_max[size_t(y)], a);
    if (a >= 0.9) {  // interior pixels carry the colour without edge blending
      for (int c = 0; c < 3; ++c) colour_sum[size_t(c)] += rgb[3 * p + c];
      ++bright;
    }
  }
  const double mx = sx / area, my = sy / area;
  double vx = 0, vy = 0, m3 = 0;
  for (int p = 0; p < W * W; ++p) {
    if (label[size_t(p)] != l) continue;
    const double a = alpha(p), dx = p % W + 0.5 - mx, dy = p / W + 0.5 - my;
    vx += a * dx * dx, vy += a * dy * dy, m3 += a * dy * dy * dy;
  }
  vx /= area, vy /= area, m3 /= area;
  for (double& c : colour_sum) c /= bright;
  double width = 0, height = 0;
  for (int i = 0; i < W; ++i) width += col_max[size_t(i)], height += row_max[size_t(i)];
  DetectedShape s;
  s.colour = nearest_colour(colour_sum);
  s.fill = area / (width * height);
  s.skew = vy > 0 ? m3 / std::pow(vy, 1.5) : 0.0;
  s.type = classify_type(s.fill, s.skew);
  s.side = side_from_moments(s.type, vx, vy);
  s.size = s.side >= kLargeSide * W ? "large" : "small";
  s.cx = mx;
  s.cy = s.type == "triangle" ? my - s.side / 6 : my;  // a triangle's centroid lies s / 6 below its box centre
  return s;
}

std::string position_of(const DetectedShape& s, int W) {
  auto third = [&](double v) { return std::clamp(int(std::floor(3 * v / W)), 0, 2); };
  return kPositionWords[size_t(3 * third(s.cy) + third(s.cx))];
}

// A's relation to B, along the axis of the larger displacement.
std::string relation_of(const DetectedShape& a, const DetectedShape& b) {
  const double dx = b.cx - a.cx, dy = b.cy - a.cy;
  if (std::fabs(dy) > std::fabs(dx)) return dy > 0 ? "above" : "below";
  return dx > 0 ? "to the left of" : "to the right of";
}

std::string describe(const CaptionShape& c) { return "a " + c.size + " " + c.colour + " " + c.type; }

// Mismatches between a named shape and a detected one, in the order colour, type, size.
void compare(const CaptionShape& want, const DetectedShape& got, std::vector<std::string>& out) {
  std::ostringstream side;
  side.precision(3);
  side << got.side;
  if (got.colour != want.colour) out.push_back(describe(want) + ": the shape is " + got.colour);
  if (got.type != want.type) out.push_back(describe(want) + ": the shape is a " + got.type);
  if (got.size != want.size)
    out.push_back(describe(want) + ": the shape is " + got.size + " (side " + side.str() + " px)");
}

}  // namespace

ParsedCaption parse_shapes_caption(const std::string& caption) { return CaptionParser(caption).parse(); }

std::vector<DetectedShape> detect_shapes(const uint8_t* rgb, int width) {
  FM_CHECK(width >= 1, "detect_shapes: width ", width, " is not positive");
  int count = 0;
  const std::vector<int> label = label_shapes(rgb, width, &count);
  std::vector<DetectedShape> shapes;
  for (int l = 1; l <= count; ++l) shapes.push_back(measure(rgb, width, label, l));
  return shapes;
}

ShapeCheck check_shapes_caption(const uint8_t* rgb, int width, const std::string& caption) {
  const ParsedCaption want = parse_shapes_caption(caption);
  const std::vector<DetectedShape> got = detect_shapes(rgb, width);
  const size_t n = want.shapes.size();
  if (got.size() != n) {
    std::ostringstream os;
    os << "expected " << n << (n == 1 ? " shape" : " shapes") << ", found " << got.size();
    return {false, os.str()};
  }
  if (n == 1) {
    std::vector<std::string> wrong;
    compare(want.shapes[0], got[0], wrong);
    if (const std::string at = position_of(got[0], width); at != want.position)
      wrong.push_back(describe(want.shapes[0]) + ": the shape is " + at);
    return wrong.empty() ? ShapeCheck{true, ""} : ShapeCheck{false, wrong.front()};
  }
  std::vector<std::string> best;
  for (const auto& [ia, ib] : {std::pair{0, 1}, std::pair{1, 0}}) {
    std::vector<std::string> wrong;
    compare(want.shapes[0], got[size_t(ia)], wrong);
    compare(want.shapes[1], got[size_t(ib)], wrong);
    if (const std::string r = relation_of(got[size_t(ia)], got[size_t(ib)]); r != want.relation)
      wrong.push_back("the " + want.shapes[0].colour + " " + want.shapes[0].type + " is " + r + " the " +
                      want.shapes[1].colour + " " + want.shapes[1].type);
    if (wrong.empty()) return {true, ""};
    if (best.empty() || wrong.size() < best.size()) best = std::move(wrong);
  }
  return {false, best.front()};
}

}  // namespace fm::data

#pragma once
// Does an image depict its captioned-shapes caption? (section 11 of
// ../shared/specs/captioned-shapes.md). The checker sees only RGB pixels and
// the caption, and shares no code with the generator, so it can judge images
// made by a text-to-image model as well as the data set itself.
//
// How it reads an image: pixels whose brightest channel is at least half of
// the image's brightest (and 64) form the cores of shapes (8-connected; cores smaller than a
// quarter of the smallest shape's area are specks and ignored); dimmer pixels
// within two pixels of a core join it as anti-aliased edges. Per shape, with
// alpha = brightest channel / the shape's brightest pixel (so dimming does not
// matter):
//   colour  the mean of its brightest pixels, scaled to full brightness, then
//           the nearest palette colour (so dimmed or slightly shifted colours
//           still read as their colour);
//   extent  width = sum over columns of the column's largest alpha, height
//           likewise over rows (sub-pixel box sides, for the fill);
//   type    from two scale-free numbers: the skewness of the vertical mass
//           (an upward triangle has its mass low: -0.57; circles and squares
//           0) says triangle or not; then fill = area / (width x height)
//           (circle pi/4, square 1) says circle or square;
//   side    from the second moments of the mass and the type (a blur
//           barely changes it): large when side >= 0.28 W;
//   centre  the alpha-weighted centroid, moved up by side / 6 for a triangle
//           (whose centroid lies s / 6 below its box centre).
// A two-shape caption is matched with the pairing of shapes to names that
// leaves the fewest mismatches.
#include <cstdint>
#include <string>
#include <vector>

namespace fm::data {

struct CaptionShape {
  std::string size, colour, type;
};

// One caption, split into its parts: one shape and a position, or shapes A
// and B and a relation.
struct ParsedCaption {
  std::vector<CaptionShape> shapes;  // 1 or 2
  std::string position;              // one-shape captions, e.g. "in the top left"
  std::string relation;              // two-shape captions: above | below | to the left of | to the right of
};

// Throws fm::Error, quoting the caption, when it is outside the grammar
// (the grammar lets a two-shape caption name one colour twice, although the
// data set never does).
ParsedCaption parse_shapes_caption(const std::string& caption);

// A shape as the checker reads it from pixels.
struct DetectedShape {
  std::string colour, type, size;
  double cx = 0, cy = 0;      // box centre, pixels
  double side = 0;            // box side, pixels
  double fill = 0, skew = 0;  // the type's evidence
};

// The shapes in a W x W RGB image (HWC), in raster order of their first pixel.
std::vector<DetectedShape> detect_shapes(const uint8_t* rgb, int width);

struct ShapeCheck {
  bool ok = false;
  std::string reason;  // the first mismatch, e.g. "expected 2 shapes, found 1"; empty when ok
};

// Parses the caption (fm::Error outside the grammar) and compares it with
// what detect_shapes reads from the image.
ShapeCheck check_shapes_caption(const uint8_t* rgb, int width, const std::string& caption);

}  // namespace fm::data

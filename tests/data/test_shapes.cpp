// Captioned shapes (../shared/specs/captioned-shapes.md): the generator's
// determinism, grammar, sampling rules and rendering, and the independent
// checker's acceptance of generated images and rejection of wrong captions.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "fm/data/shapes.h"
#include "fm/data/shapes_checker.h"
#include "fm/error.h"
#include "fm/random.h"

using namespace fm;
using namespace fm::data;

namespace {

// The grammar's word lists, copied from the spec.
const std::vector<std::string> kSizes{"small", "large"};
const std::vector<std::string> kColours{"red", "green", "blue", "yellow", "magenta", "cyan", "white", "orange"};
const std::vector<std::string> kTypes{"circle", "square", "triangle"};
const std::vector<std::string> kPositions{"in the top left",    "at the top",    "in the top right",
                                          "on the left",        "in the center", "on the right",
                                          "in the bottom left", "at the bottom", "in the bottom right"};
const std::vector<std::string> kRelations{"above", "below", "to the left of", "to the right of"};
const std::map<std::string, std::array<int, 3>> kRgb{
    {"red", {255, 0, 0}},       {"green", {0, 255, 0}},  {"blue", {0, 0, 255}},      {"yellow", {255, 255, 0}},
    {"magenta", {255, 0, 255}}, {"cyan", {0, 255, 255}}, {"white", {255, 255, 255}}, {"orange", {255, 128, 0}}};

ShapesSample sample(int width, const std::string& split, int64_t index, uint64_t seed = 0) {
  ShapesOptions o;
  o.width = width;
  o.split = split;
  o.seed = seed;
  return generate_shape_sample(o, index);
}

std::string phrase(const std::string& size, const std::string& colour, const std::string& type) {
  return "a " + size + " " + colour + " " + type;
}
std::string phrase(const Shape2D& s) { return phrase(s.size_word, s.colour, s.type); }

std::vector<std::string> words_of(const std::string& caption) {
  std::istringstream in(caption);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

template <class T>
T pick_other(const std::vector<T>& options, const std::set<T>& avoid, std::mt19937& rng) {
  std::vector<T> left;
  for (const T& o : options)
    if (!avoid.count(o)) left.push_back(o);
  return left[std::uniform_int_distribution<size_t>(0, left.size() - 1)(rng)];
}

// The named cell of a one-shape caption, as (column, row).
std::pair<int, int> cell_of(const std::string& position) {
  const int i = int(std::find(kPositions.begin(), kPositions.end(), position) - kPositions.begin());
  return {i % 3, i / 3};
}

// A Gaussian blur of standard deviation sigma pixels (edges clamped), a gain
// per channel and uniform noise of +-noise: a stand-in for a model's image.
std::vector<uint8_t> degrade(const std::vector<uint8_t>& rgb, int W, double sigma, std::array<double, 3> gain,
                             double noise, std::mt19937& rng) {
  const int R = int(std::ceil(3 * sigma));
  std::vector<double> k;
  double sum = 0;
  for (int i = -R; i <= R; ++i) sum += k.emplace_back(std::exp(-i * i / (2 * sigma * sigma)));
  for (double& v : k) v /= sum;
  std::vector<double> rows(rgb.size()), both(rgb.size());
  auto at = [&](int x, int y, int c) { return (size_t(y) * W + x) * 3 + c; };
  for (int y = 0; y < W; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        for (int i = -R; i <= R; ++i)
          rows[at(x, y, c)] += k[size_t(i + R)] * rgb[at(std::clamp(x + i, 0, W - 1), y, c)];
  for (int y = 0; y < W; ++y)
    for (int x = 0; x < W; ++x)
      for (int c = 0; c < 3; ++c)
        for (int i = -R; i <= R; ++i)
          both[at(x, y, c)] += k[size_t(i + R)] * rows[at(x, std::clamp(y + i, 0, W - 1), c)];
  std::uniform_real_distribution<double> u(-noise, noise);
  std::vector<uint8_t> out(rgb.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = uint8_t(std::clamp(std::lround(both[i] * gain[i % 3] + u(rng)), 0L, 255L));
  return out;
}

double rate(int hits, int n) { return n == 0 ? 0.0 : double(hits) / n; }

}  // namespace

TEST(ShapesGenerator, SameIndexSameBytesInAnyOrderAndOnAnyThread) {
  const PhiloxState before = default_generator().state();
  std::vector<ShapesSample> forward;
  for (int64_t i = 0; i < 40; ++i) forward.push_back(sample(32, "train", i, 7));
  for (int64_t i = 39; i >= 0; --i) {
    const ShapesSample again = sample(32, "train", i, 7);
    EXPECT_EQ(again.rgb, forward[size_t(i)].rgb) << i;
    EXPECT_EQ(again.caption, forward[size_t(i)].caption) << i;
  }
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int64_t i = t; i < 40; i += 4)
        mismatches[size_t(t)] += sample(32, "train", i, 7).rgb != forward[size_t(i)].rgb;
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
  EXPECT_EQ(default_generator().state().offset, before.offset) << "the generator must not draw from the default stream";
  EXPECT_EQ(default_generator().state().seed, before.seed);
}

TEST(ShapesGenerator, SeedsSplitsAndIndicesGiveDifferentSamples) {
  int same_seed = 0, same_split = 0, same_neighbour = 0;
  for (int64_t i = 0; i < 50; ++i) {
    const ShapesSample a = sample(32, "test", i, 1);
    same_seed += a.rgb == sample(32, "test", i, 2).rgb;
    same_split += a.rgb == sample(32, "train", i, 1).rgb;
    same_neighbour += a.rgb == sample(32, "test", i + 1, 1).rgb;
  }
  EXPECT_EQ(same_seed, 0);
  EXPECT_EQ(same_split, 0);
  EXPECT_EQ(same_neighbour, 0);
}

TEST(ShapesGenerator, BadOptionsAreErrorsNamingTheOption) {
  ShapesOptions o;
  auto message = [](const ShapesOptions& opt, int64_t index) -> std::string {
    try {
      generate_shape_sample(opt, index);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  ShapesOptions narrow = o, split = o, ss = o;
  narrow.width = 8;
  split.split = "val";
  ss.supersample = 0;
  EXPECT_NE(message(narrow, 0).find("width 8"), std::string::npos);
  EXPECT_NE(message(split, 0).find("split 'val'"), std::string::npos);
  EXPECT_NE(message(ss, 0).find("supersample 0"), std::string::npos);
  EXPECT_NE(message(o, -1).find("index -1"), std::string::npos);
}

TEST(ShapesCaptions, VocabularyHas27DistinctWords) {
  const std::vector<std::string>& v = shapes_vocabulary();
  EXPECT_EQ(v.size(), 27u);
  EXPECT_EQ(std::set<std::string>(v.begin(), v.end()).size(), 27u);
}

TEST(ShapesCaptions, TheGrammarHas432OneShapeAnd8064TwoShapeCaptionsThatAllParse) {
  const std::set<std::string> vocabulary(shapes_vocabulary().begin(), shapes_vocabulary().end());
  std::set<std::string> one, two;
  for (const auto& s : kSizes)
    for (const auto& c : kColours)
      for (const auto& t : kTypes) {
        for (const auto& p : kPositions) one.insert(phrase(s, c, t) + " " + p);
        for (const auto& r : kRelations)
          for (const auto& s2 : kSizes)
            for (const auto& c2 : kColours)
              for (const auto& t2 : kTypes)
                if (c2 != c) two.insert(phrase(s, c, t) + " " + r + " " + phrase(s2, c2, t2));
      }
  EXPECT_EQ(one.size(), 432u);
  EXPECT_EQ(two.size(), 8064u);
  for (const std::string& caption : one) {
    const ParsedCaption p = parse_shapes_caption(caption);
    ASSERT_EQ(p.shapes.size(), 1u) << caption;
    EXPECT_EQ(phrase(p.shapes[0].size, p.shapes[0].colour, p.shapes[0].type) + " " + p.position, caption);
  }
  for (const std::string& caption : two) {
    const ParsedCaption p = parse_shapes_caption(caption);
    ASSERT_EQ(p.shapes.size(), 2u) << caption;
    EXPECT_EQ(phrase(p.shapes[0].size, p.shapes[0].colour, p.shapes[0].type) + " " + p.relation + " " +
                  phrase(p.shapes[1].size, p.shapes[1].colour, p.shapes[1].type),
              caption);
    for (const std::string& w : words_of(caption)) ASSERT_TRUE(vocabulary.count(w)) << w;
  }
}

TEST(ShapesCaptions, CaptionsOutsideTheGrammarAreErrorsQuotingThem) {
  for (const std::string bad :
       {"", "a large red circle", "a tiny red circle on the left", "a large purple circle on the left",
        "a large red oval on the left", "a large red circle on the left ", " a large red circle on the left",
        "a large red circle  on the left", "A large red circle on the left", "a large red circle in the middle",
        "a large red circle above", "a large red circle above a small blue",
        "a large red circle above the small blue square", "a large red circle on the left of a small blue square",
        "a small red circle above a large blue square now"}) {
    try {
      parse_shapes_caption(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'" + bad + "'"), std::string::npos) << e.what();
    }
  }
}

// Every sampling rule of the spec, over a few thousand samples of each split.
TEST(ShapesGenerator, SamplesFollowTheSpec) {
  for (const std::string split : {"train", "test"}) {
    const int W = 32, n = split == "train" ? 4000 : 2000;
    int two = 0;
    std::map<std::string, int> seen;
    for (int64_t i = 0; i < n; ++i) {
      const ShapesSample s = sample(W, split, i, 3);
      ASSERT_EQ(s.width, W);
      ASSERT_EQ(s.rgb.size(), size_t(W * W * 3));
      const ParsedCaption p = parse_shapes_caption(s.caption);  // throws outside the grammar
      ASSERT_EQ(p.shapes.size(), s.shapes.size()) << s.caption;
      for (size_t k = 0; k < s.shapes.size(); ++k) {
        const Shape2D& sh = s.shapes[k];
        EXPECT_EQ(phrase(p.shapes[k].size, p.shapes[k].colour, p.shapes[k].type), phrase(sh)) << s.caption;
        const double lo = sh.size_word == "small" ? 0.16 : 0.34, hi = sh.size_word == "small" ? 0.22 : 0.40;
        EXPECT_TRUE(sh.s >= lo * W && sh.s <= hi * W) << s.caption << ": s = " << sh.s;
        for (double c : {sh.cx, sh.cy})
          EXPECT_TRUE(c >= sh.s / 2 + 1 && c <= W - sh.s / 2 - 1) << s.caption << ": " << c;
        const bool held_out = is_held_out_pair(sh.colour, sh.type);
        if (split == "train") EXPECT_FALSE(held_out) << s.caption;
        ++seen[sh.colour], ++seen[sh.type], ++seen[sh.size_word];
        if (held_out) ++seen[sh.colour + " " + sh.type];
      }
      if (s.shapes.size() == 1) {
        const auto [col, row] = cell_of(p.position);
        const Shape2D& a = s.shapes[0];
        // Inside the named cell, at least 0.05 W from its borders.
        EXPECT_TRUE(a.cx >= col * W / 3.0 + 0.05 * W - 1e-9 && a.cx <= (col + 1) * W / 3.0 - 0.05 * W + 1e-9)
            << s.caption << ": cx " << a.cx;
        EXPECT_TRUE(a.cy >= row * W / 3.0 + 0.05 * W - 1e-9 && a.cy <= (row + 1) * W / 3.0 - 0.05 * W + 1e-9)
            << s.caption << ": cy " << a.cy;
        ++seen[p.position];
        continue;
      }
      ++two, ++seen[p.relation];
      const Shape2D &a = s.shapes[0], &b = s.shapes[1];
      EXPECT_NE(a.colour, b.colour) << s.caption;
      const double dx = b.cx - a.cx, dy = b.cy - a.cy;
      // Along the relation's axis: the signed displacement (positive in the
      // named direction), the one across it, and the gap between the boxes
      // (at least 0.06 W, so the shapes never touch).
      const bool vertical = p.relation == "above" || p.relation == "below";
      const double sign = p.relation == "above" || p.relation == "to the left of" ? 1 : -1;
      const double along = sign * (vertical ? dy : dx), across = vertical ? dx : dy;
      EXPECT_GT(along, 0) << s.caption;
      EXPECT_LE(std::fabs(across), 0.5 * along) << s.caption;
      const double gap = along - (a.s + b.s) / 2;
      EXPECT_GE(gap, 0.06 * W - 1e-9) << s.caption;
    }
    // One shape or two with probability 1/2: 4 standard deviations is 0.032 at n = 4000, 0.045 at 2000.
    EXPECT_NEAR(rate(two, n), 0.5, 2.0 / std::sqrt(double(n))) << split;
    std::vector<std::string> all = kColours;
    for (const auto& list : {kTypes, kSizes, kPositions, kRelations}) all.insert(all.end(), list.begin(), list.end());
    for (const std::string& w : all) EXPECT_GT(seen[w], 0) << split << ": never saw '" << w << "'";
    for (const std::string pair : {"red triangle", "green circle", "blue square", "white triangle"})
      if (split == "test") EXPECT_GT(seen[pair], 0) << "test never shows the held-out " << pair;
  }
}

// Area coverage: pixels inside a shape are its exact colour, pixels away
// from every box are black, and the summed coverage is the shape's area.
TEST(ShapesGenerator, RenderingCoversTheShapesArea) {
  for (const int W : {32, 64})
    for (int64_t i = 0; i < 300; ++i) {
      const ShapesSample s = sample(W, "test", i);
      auto px = [&](int x, int y) { return &s.rgb[(size_t(y) * W + x) * 3]; };
      double covered = 0, area = 0;
      for (int y = 0; y < W; ++y)
        for (int x = 0; x < W; ++x) {
          const uint8_t* p = px(x, y);
          covered += std::max({p[0], p[1], p[2]}) / 255.0;  // every palette colour has a channel at 255
          const bool near_a_box = std::any_of(s.shapes.begin(), s.shapes.end(), [&](const Shape2D& sh) {
            return x + 1 > sh.cx - sh.s / 2 && x < sh.cx + sh.s / 2 && y + 1 > sh.cy - sh.s / 2 && y < sh.cy + sh.s / 2;
          });
          if (!near_a_box) ASSERT_EQ(p[0] + p[1] + p[2], 0) << s.caption << " at " << x << "," << y;
        }
      for (const Shape2D& sh : s.shapes) {
        area += sh.s * sh.s * (sh.type == "square" ? 1.0 : sh.type == "circle" ? M_PI / 4 : 0.5);
        // A pixel wholly inside: around the centre, or for a triangle a quarter side lower.
        const double y = sh.type == "triangle" ? sh.cy + sh.s / 4 : sh.cy;
        const uint8_t* p = px(int(sh.cx), int(y));
        const std::array<int, 3> want = kRgb.at(sh.colour);
        EXPECT_EQ((std::array<int, 3>{p[0], p[1], p[2]}), want) << s.caption;
      }
      EXPECT_NEAR(covered, area, 0.03 * area + 1) << s.caption;
    }
}

TEST(ShapesGenerator, SupersampleOneGivesHardEdges) {
  ShapesOptions o;
  o.supersample = 1;
  for (int64_t i = 0; i < 50; ++i) {
    const ShapesSample s = generate_shape_sample(o, i);
    std::set<std::array<int, 3>> allowed{{0, 0, 0}};
    for (const Shape2D& sh : s.shapes) allowed.insert(kRgb.at(sh.colour));
    for (size_t p = 0; p < s.rgb.size(); p += 3)
      ASSERT_TRUE(allowed.count({s.rgb[p], s.rgb[p + 1], s.rgb[p + 2]})) << s.caption;
  }
}

TEST(ShapesChecker, AcceptsAtLeast99PercentOfGeneratedSamples) {
  for (const int W : {32, 64}) {
    const int n = 2000;
    int ok = 0;
    for (int64_t i = 0; i < n; ++i) {
      const ShapesSample s = sample(W, "test", i, 11);
      const ShapeCheck c = check_shapes_caption(s.rgb.data(), W, s.caption);
      ok += c.ok;
      if (!c.ok) ADD_FAILURE() << "W " << W << " #" << i << " '" << s.caption << "': " << c.reason;
      EXPECT_EQ(c.ok, c.reason.empty());
    }
    std::cout << "[ shapes ] checker accepts " << ok << " / " << n << " generated samples at W = " << W << "\n";
    EXPECT_GE(rate(ok, n), 0.99) << "W = " << W;
  }
}

// One attribute changed at a time; each changed caption is still in the
// grammar (and names two different colours), but no longer true.
TEST(ShapesChecker, RejectsCaptionsWithOneAttributeChanged) {
  std::mt19937 rng(5);
  std::map<std::string, std::pair<int, int>> rejected;  // attribute -> (rejected, tried)
  for (const int W : {32, 64})
    for (int64_t i = 0; i < 800; ++i) {
      const ShapesSample s = sample(W, "test", i, 13);
      const ParsedCaption p = parse_shapes_caption(s.caption);
      std::vector<CaptionShape> shapes = p.shapes;
      auto caption = [&](const std::vector<CaptionShape>& sh) {
        const std::string first = phrase(sh[0].size, sh[0].colour, sh[0].type);
        if (sh.size() == 1) return first + " " + p.position;
        return first + " " + p.relation + " " + phrase(sh[1].size, sh[1].colour, sh[1].type);
      };
      auto judge = [&](const std::string& attribute, const std::string& wrong) {
        ASSERT_NE(wrong, s.caption);
        parse_shapes_caption(wrong);
        auto& [no, tried] = rejected[attribute];
        ++tried;
        no += !check_shapes_caption(s.rgb.data(), W, wrong).ok;
      };
      const size_t k = std::uniform_int_distribution<size_t>(0, shapes.size() - 1)(rng);  // the shape to change
      std::set<std::string> colours;
      for (const CaptionShape& c : shapes) colours.insert(c.colour);
      std::vector<CaptionShape> changed = shapes;
      changed[k].colour = pick_other(kColours, colours, rng);
      judge("colour", caption(changed));
      changed = shapes;
      changed[k].type = pick_other(kTypes, {shapes[k].type}, rng);
      judge("type", caption(changed));
      changed = shapes;
      changed[k].size = shapes[k].size == "small" ? "large" : "small";
      judge("size", caption(changed));
      if (shapes.size() == 1) {
        judge("position", phrase(shapes[0].size, shapes[0].colour, shapes[0].type) + " " +
                              pick_other(kPositions, {p.position}, rng));
        const std::string other = pick_other(kColours, colours, rng);
        judge("count", phrase(shapes[0].size, shapes[0].colour, shapes[0].type) + " " +
                           pick_other(kRelations, {}, rng) + " " +
                           phrase(pick_other(kSizes, {}, rng), other, pick_other(kTypes, {}, rng)));
      } else {
        const std::string r = pick_other(kRelations, {p.relation}, rng);
        judge("relation", phrase(shapes[0].size, shapes[0].colour, shapes[0].type) + " " + r + " " +
                              phrase(shapes[1].size, shapes[1].colour, shapes[1].type));
        judge("count",
              phrase(shapes[k].size, shapes[k].colour, shapes[k].type) + " " + pick_other(kPositions, {}, rng));
      }
    }
  for (const auto& [attribute, counts] : rejected) {
    const auto [no, tried] = counts;
    std::cout << "[ shapes ] checker rejects " << no << " / " << tried << " captions with a changed " << attribute
              << "\n";
    EXPECT_GE(rate(no, tried), 0.95) << attribute;
  }
}

TEST(ShapesChecker, ReadsBlurredDimmedNoisyImages) {
  std::mt19937 rng(9);
  for (const auto& [W, sigma] : {std::pair{32, 0.6}, std::pair{64, 1.0}}) {
    const int n = 500;
    int ok = 0;
    for (int64_t i = 0; i < n; ++i) {
      const ShapesSample s = sample(W, "test", i, 17);
      const std::vector<uint8_t> img = degrade(s.rgb, W, sigma, {0.85, 0.9, 0.8}, 10, rng);
      ok += check_shapes_caption(img.data(), W, s.caption).ok;
    }
    std::cout << "[ shapes ] checker accepts " << ok << " / " << n << " degraded samples at W = " << W
              << " (blur sigma " << sigma << " px, gain 0.8-0.9, noise +-10)\n";
    EXPECT_GE(rate(ok, n), 0.97) << "W = " << W;
  }
}

TEST(ShapesChecker, CountsShapesAndIgnoresSpecks) {
  const int W = 32;
  const std::vector<uint8_t> black(size_t(W * W * 3), 0);
  const ShapeCheck empty = check_shapes_caption(black.data(), W, "a large red circle on the left");
  EXPECT_FALSE(empty.ok);
  EXPECT_EQ(empty.reason, "expected 1 shape, found 0");
  int64_t i = 0;
  ShapesSample s = sample(W, "test", i);
  while (s.shapes.size() != 1) s = sample(W, "test", ++i);
  // Single bright pixels far from the shape are specks, not shapes.
  std::vector<uint8_t> specked = s.rgb;
  const Shape2D& a = s.shapes[0];
  int added = 0;
  for (int y = 0; y < W && added < 3; y += 5)
    for (int x = 0; x < W && added < 3; x += 7)
      if (std::hypot(x - a.cx, y - a.cy) > a.s + 3) {
        std::fill_n(&specked[(size_t(y) * W + x) * 3], 3, uint8_t(255));
        ++added;
      }
  ASSERT_EQ(added, 3);
  EXPECT_TRUE(check_shapes_caption(specked.data(), W, s.caption).ok) << s.caption;
  const ShapeCheck two = check_shapes_caption(
      s.rgb.data(), W, phrase(a) + " above " + phrase("small", a.colour == "red" ? "blue" : "red", "square"));
  EXPECT_FALSE(two.ok);
  EXPECT_EQ(two.reason, "expected 2 shapes, found 1");
}

// The shapes exact-match rule of the caption kind's evaluation: a two-shape
// caption may name either shape first.
#include <gtest/gtest.h>

#include "fm/tasks/caption.h"

namespace fm::tasks {
namespace {

TEST(SameShapesCaption, EqualTextMatches) {
  EXPECT_TRUE(same_shapes_caption("a large red circle on the left", "a large red circle on the left"));
  EXPECT_TRUE(same_shapes_caption("not a shapes caption", "not a shapes caption"));
}

TEST(SameShapesCaption, TwoShapeCaptionsMatchFromEitherShape) {
  const std::pair<const char*, const char*> same[] = {
      {"a small red circle above a large blue square", "a large blue square below a small red circle"},
      {"a large orange triangle to the left of a small cyan circle", "a small cyan circle to the right of a large orange triangle"},
      {"a small white square below a large green triangle", "a large green triangle above a small white square"},
  };
  for (const auto& [a, b] : same) {
    EXPECT_TRUE(same_shapes_caption(a, b)) << a << " / " << b;
    EXPECT_TRUE(same_shapes_caption(b, a)) << b << " / " << a;
  }
}

TEST(SameShapesCaption, OneChangedWordDoesNotMatch) {
  const char* ref = "a small red circle above a large blue square";
  for (const char* other : {"a large blue square above a small red circle",   // swapped, relation kept
                            "a small red circle below a large blue square",   // relation flipped
                            "a large blue square below a small red square",   // a type changed
                            "a large blue square below a large red circle",   // a size changed
                            "a small red circle to the left of a large blue square",
                            "a small red circle above a large blue square above"})  // outside the grammar
    EXPECT_FALSE(same_shapes_caption(ref, other)) << other;
  EXPECT_FALSE(same_shapes_caption("a large red circle on the left", "a large red circle on the right"));
  EXPECT_FALSE(same_shapes_caption("a large red circle on the left", "a large red square on the left"));
}

}  // namespace
}  // namespace fm::tasks

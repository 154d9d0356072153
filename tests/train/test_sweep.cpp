// fm sweep's grids: Cartesian products, linked keys, point names, and
// malformed grids refused with the axis at fault.
#include <gtest/gtest.h>

#include "fm/error.h"
#include "fm/train/sweep.h"

using fm::train::expand_grid;

namespace {

std::string message_of(const std::string& grid) {
  try {
    expand_grid(grid);
  } catch (const fm::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(SweepGrid, CartesianProductFirstAxisOutermost) {
  const auto points = expand_grid("model.d_model=64,128  train.max_steps=100,200,400");
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0].name, "d_model64-max_steps100");
  EXPECT_EQ(points[2].name, "d_model64-max_steps400");
  EXPECT_EQ(points[3].name, "d_model128-max_steps100");
  const std::vector<std::string> want = {"--model.d_model=128", "--train.max_steps=200"};
  EXPECT_EQ(points[4].overrides(), want);
}

TEST(SweepGrid, LinkedKeysVaryTogether) {
  const auto points = expand_grid("model.n_layer:model.d_model=2:64,4:128 train.lr=3e-4");
  ASSERT_EQ(points.size(), 2u);
  EXPECT_EQ(points[1].name, "n_layer4-d_model128-lr3e-4");
  ASSERT_EQ(points[1].values.size(), 3u);
  EXPECT_EQ(points[1].values[1], (std::pair<std::string, std::string>{"model.d_model", "128"}));
}

TEST(SweepGrid, NamesStayDistinctAndSafe) {
  // Two keys that end alike keep their whole names; a path keeps no '/'.
  const auto points = expand_grid("model.dropout=0.1 data.dropout=0.2 data.train=a/b*.bin");
  EXPECT_EQ(points[0].name, "model.dropout0.1-data.dropout0.2-traina_b_.bin");
}

TEST(SweepGrid, MalformedGridsAreRefused) {
  EXPECT_NE(message_of("").find("the grid is empty"), std::string::npos);
  EXPECT_NE(message_of("model.d_model").find("grid axis 'model.d_model' is not KEY=V1,V2"), std::string::npos);
  EXPECT_NE(message_of("model.d_model=64,").find("has an empty value"), std::string::npos);
  EXPECT_NE(message_of("model.d_model=64,64").find("lists '64' twice"), std::string::npos);
  EXPECT_NE(message_of("a.x:a.y=1:2,3").find("value '3' has 1 part(s) for 2 keys"), std::string::npos);
  EXPECT_NE(message_of("a.x=1 a.x=2").find("grid key 'a.x' is on two axes"), std::string::npos);
  EXPECT_NE(message_of("a.p=x/y,x_y").find("share the directory 'px_y'"), std::string::npos);
}

// The data transforms of the kinds that read images (media builds only):
// image_transform, the image alone (the autoencoder kind), gives exactly the
// image image_text_transform gives the same sample and seed, with random
// resized crops and flips on, in RGB and converted to grey.
#include <gtest/gtest.h>

#include "fm/factory.h"
#include "fm/ops.h"
#include "fm/tasks/image_text_data.h"

using namespace fm;

namespace {

data::ImageTextSample sample(int height, int width, uint32_t seed) {
  data::ImageTextSample s;
  s.key = s.origin = "mem:" + std::to_string(seed);
  s.height = height, s.width = width, s.channels = 3;
  s.pixels.resize(size_t(height) * size_t(width) * 3);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& p : s.pixels) p = uint8_t((x = x * 1664525u + 1013904223u) >> 24);
  s.caption = "a large red circle on the left";
  return s;
}

}  // namespace

TEST(ImageKindData, ImageTransformIsImageTextTransformsImage) {
  for (int64_t channels : {3, 1}) {
    tasks::ImageTransformOptions o;
    o.size = 16, o.channels = channels, o.random_crop = true, o.crop_scale_min = 0.3, o.hflip = true;
    o.mean = {0.4f}, o.std = {0.25f};
    const data::Transform image_only = tasks::image_transform(o);
    const data::Transform with_text = tasks::image_text_transform(o, tasks::caption_tokenizer(""), 8, {});
    for (uint32_t i = 0; i < 12; ++i) {
      const data::ImageTextSample s = sample(20 + int(i), 27, i);
      const uint64_t seed = 1000 + i * 7;
      const data::Example a = image_only(s, seed), b = with_text(s, seed);
      ASSERT_EQ(a.size(), 1u);
      ASSERT_EQ(a.at("image").shape(), (Shape{channels, 16, 16}));
      EXPECT_EQ(max(abs(a.at("image") - b.at("image"))).item(), 0.0) << "sample " << i << ", " << channels << " channels";
    }
    // Another seed, another crop.
    const data::ImageTextSample s = sample(40, 40, 99);
    EXPECT_GT(max(abs(image_only(s, 1).at("image") - image_only(s, 2).at("image"))).item(), 0.0);
  }
  tasks::ImageTransformOptions bad;
  bad.mean = {0.5f, 0.5f};  // neither 1 nor 3 values
  EXPECT_THROW(tasks::image_transform(bad), Error);
}

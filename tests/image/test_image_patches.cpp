// fm::image patchify / unpatchify against MAE's einsum and as exact inverses
// (with gradcheck), and sincos_pos_embed_2d against MAE's numpy formula
// (tests/fixtures/make_image_fixtures.py).
#include <filesystem>

#include "fm/image/patches.h"
#include "fm/io/safetensors.h"
#include "helpers.h"

using namespace fm;

namespace {

const io::TensorMap& fixture() {
  static const io::Safetensors st = io::load_safetensors(
      (std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / "image_patches.safetensors").string());
  return st.tensors;
}

TEST(ImagePatches, PatchifyMatchesMae) {
  const Tensor images = fixture().at("images");  // [2, 3, 8, 12]
  const Tensor patches = image::patchify(images, 4);
  EXPECT_EQ(patches.shape(), (Shape{2, 6, 48}));
  EXPECT_TRUE(test::all_close(patches, fixture().at("patches.4"), 0, 0));
}

TEST(ImagePatches, UnpatchifyInvertsPatchify) {
  for (int64_t p : {1, 2, 4}) {
    const Tensor images = randn({2, 3, 8, 12});
    const Tensor back = image::unpatchify(image::patchify(images, p), p, 3, 8, 12);
    EXPECT_TRUE(test::all_close(back, images, 0, 0)) << "patch " << p;
  }
  const Tensor patches = randn({1, 6, 16});  // 1 channel, 2x3 grid of 4x4 patches
  EXPECT_TRUE(test::all_close(image::patchify(image::unpatchify(patches, 4, 1, 8, 12), 4), patches, 0, 0));
}

TEST(ImagePatches, NaiveIndexing) {
  // Element (b, n, (py * p + px) * C + c) is pixel (b, c, gy * p + py, gx * p + px), n = gy * W/p + gx.
  const int64_t B = 2, C = 3, H = 6, W = 9, p = 3;
  const Tensor images = randn({B, C, H, W});
  const std::vector<float> x = images.to_vector<float>(), y = image::patchify(images, p).to_vector<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          const int64_t n = (h / p) * (W / p) + w / p, k = ((h % p) * p + w % p) * C + c;
          ASSERT_EQ(y[size_t((b * (H / p) * (W / p) + n) * p * p * C + k)], x[size_t(((b * C + c) * H + h) * W + w)]);
        }
}

TEST(ImagePatches, Gradients) {
  EXPECT_TRUE(test::grads_ok([](const std::vector<Tensor>& in) { return image::patchify(in[0], 2); },
                             {test::leaf({1, 2, 4, 6})}));
  EXPECT_TRUE(test::grads_ok([](const std::vector<Tensor>& in) { return image::unpatchify(in[0], 2, 2, 4, 6); },
                             {test::leaf({1, 6, 8})}));
}

TEST(ImagePatches, Errors) {
  test::expect_error([] { image::patchify(zeros({1, 3, 8, 10}), 4); }, "[1,3,8,10]");
  test::expect_error([] { image::patchify(zeros({3, 8, 8}), 4); }, "[B, C, H, W]");
  test::expect_error([] { image::unpatchify(zeros({1, 4, 48}), 4, 3, 8, 12); }, "[B, 6, 48]");
}

TEST(ImagePositions, SincosMatchesMae) {
  int cases = 0;
  for (const auto& [key, want] : fixture()) {
    if (key.rfind("sincos.", 0) != 0) continue;
    int64_t dim, gh, gw;
    char dot, x;
    std::istringstream(key.substr(7)) >> dim >> dot >> gh >> x >> gw;
    const Tensor got = image::sincos_pos_embed_2d(dim, gh, gw);
    EXPECT_EQ(got.dtype(), DType::f32);
    EXPECT_TRUE(test::all_close(got, want, 0, 1e-6)) << key;
    ++cases;
  }
  EXPECT_EQ(cases, 5);
  test::expect_error([] { image::sincos_pos_embed_2d(10, 2, 2); }, "multiple of 4");
}

}  // namespace

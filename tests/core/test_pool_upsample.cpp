// avg_pool2d and upsample: forward against direct loops (PyTorch's rules),
// a few values PyTorch prints, gradcheck, errors.
#include <cmath>

#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

namespace {

// Mean over the k x k window at (oh * s - p, ow * s - p), padding counted as zeros.
Tensor ref_avg_pool2d(const Tensor& x, int64_t k, int64_t s, int64_t p) {
  const auto X = x.to_vector<double>();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = (H + 2 * p - k) / s + 1, OW = (W + 2 * p - k) / s + 1;
  std::vector<double> y;
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double acc = 0;
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) {
            const int64_t h = oh * s - p + i, w = ow * s - p + j;
            if (h >= 0 && h < H && w >= 0 && w < W) acc += X[size_t((nc * H + h) * W + w)];
          }
        y.push_back(acc / double(k * k));
      }
  return tensor(y, {N, C, OH, OW});
}

// PyTorch's nearest rule: floor(dst * scale) with scale = in / out in f32.
int64_t ref_nearest(int64_t dst, int64_t in, int64_t out) {
  const float scale = float(in) / float(out);
  return std::min(int64_t(std::floor(float(dst) * scale)), in - 1);
}

// align_corners = false: src = (dst + 0.5) * in / out - 0.5, clamped at 0.
struct Tap {
  int64_t i0, i1;
  double w1;
};
Tap ref_linear(int64_t dst, int64_t in, int64_t out) {
  const double src = std::max((dst + 0.5) * double(in) / double(out) - 0.5, 0.0);
  const int64_t i0 = std::min(int64_t(std::floor(src)), in - 1);
  return {i0, std::min(i0 + 1, in - 1), src - double(i0)};
}

Tensor ref_upsample(const Tensor& x, int64_t OH, int64_t OW, bool bilinear) {
  const auto X = x.to_vector<double>();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  std::vector<double> y;
  for (int64_t nc = 0; nc < N * C; ++nc)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        auto at = [&](int64_t h, int64_t w) { return X[size_t((nc * H + h) * W + w)]; };
        if (!bilinear) {
          y.push_back(at(ref_nearest(oh, H, OH), ref_nearest(ow, W, OW)));
          continue;
        }
        const Tap a = ref_linear(oh, H, OH), b = ref_linear(ow, W, OW);
        y.push_back((1 - a.w1) * ((1 - b.w1) * at(a.i0, b.i0) + b.w1 * at(a.i0, b.i1)) +
                    a.w1 * ((1 - b.w1) * at(a.i1, b.i0) + b.w1 * at(a.i1, b.i1)));
      }
  return tensor(y, {N, C, OH, OW});
}

}  // namespace

TEST(AvgPool2d, MatchesDirectLoops) {
  struct Case {
    Shape x;
    int64_t k, s, p;
  };
  for (const Case& c : std::vector<Case>{{{2, 3, 8, 8}, 2, 2, 0},
                                         {{1, 2, 7, 9}, 3, 2, 1},
                                         {{2, 1, 5, 6}, 3, 1, 1},
                                         {{1, 2, 9, 7}, 4, 3, 2},
                                         {{1, 1, 3, 3}, 3, 3, 0}}) {
    SCOPED_TRACE(c.x.str() + " k" + std::to_string(c.k) + " s" + std::to_string(c.s) + " p" + std::to_string(c.p));
    Tensor x = randn(c.x, DType::f64);
    EXPECT_TRUE(all_close(avg_pool2d(x, c.k, c.s, c.p), ref_avg_pool2d(x, c.k, c.s, c.p), 1e-12, 1e-12));
  }
  Tensor x = randn({2, 3, 6, 6});  // f32, stride defaults to the kernel
  Tensor y = avg_pool2d(x, 3);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2, 2}));
  EXPECT_TRUE(all_close(y, ref_avg_pool2d(x, 3, 3, 0), 1e-5, 1e-6));
}

TEST(AvgPool2d, PaddingCountsAsZeros) {
  // PyTorch: avg_pool2d(arange(1, 5).view(1, 1, 2, 2), 2, 1, 1) (count_include_pad=True).
  Tensor x = arange(1, 5).view({1, 1, 2, 2});
  EXPECT_TRUE(all_close(avg_pool2d(x, 2, 1, 1), {0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0}));
}

TEST(AvgPool2d, NonContiguousAndHalfInputs) {
  Tensor x = randn({2, 5, 6, 3}).permute({0, 3, 1, 2});
  EXPECT_TRUE(all_close(avg_pool2d(x, 2), ref_avg_pool2d(x, 2, 2, 0), 1e-5, 1e-6));
  Tensor h = x.to(DType::bf16);
  Tensor y = avg_pool2d(h, 2);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_TRUE(all_close(y, avg_pool2d(h.to(DType::f32), 2).to(DType::bf16), 0, 0));
}

TEST(Upsample, NearestMatchesPyTorchRule) {
  for (auto [h, w, oh, ow] : std::vector<std::array<int64_t, 4>>{
           {4, 4, 8, 8}, {8, 6, 3, 4}, {5, 3, 7, 11}, {3, 4, 3, 4}, {2, 7, 5, 14}}) {
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" + std::to_string(ow));
    Tensor x = randn({2, 3, h, w}, DType::f64);
    EXPECT_TRUE(all_close(upsample(x, oh, ow), ref_upsample(x, oh, ow, false), 0, 0));
  }
  // The f32 scale decides exact ties: PyTorch reads index 0 for dst 41 of 2 -> 82.
  Tensor x = tensor(std::vector<float>{10, 20}, {1, 1, 1, 2});
  Tensor y = upsample(x, 1, 82);
  EXPECT_EQ(y.to_vector<float>()[41], 10.f);
  EXPECT_EQ(y.to_vector<float>()[42], 20.f);
}

TEST(Upsample, BilinearMatchesDirectLoops) {
  for (auto [h, w, oh, ow] : std::vector<std::array<int64_t, 4>>{
           {4, 4, 8, 8}, {8, 6, 3, 4}, {5, 3, 7, 11}, {3, 4, 3, 4}, {1, 5, 4, 2}}) {
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + " -> " + std::to_string(oh) + "x" + std::to_string(ow));
    Tensor x = randn({2, 2, h, w}, DType::f64);
    EXPECT_TRUE(all_close(upsample(x, oh, ow, "bilinear"), ref_upsample(x, oh, ow, true), 1e-12, 1e-12));
    Tensor xf = x.to(DType::f32);
    EXPECT_TRUE(all_close(upsample(xf, oh, ow, "bilinear"), ref_upsample(xf, oh, ow, true), 1e-5, 1e-5));
  }
}

TEST(Upsample, BilinearPyTorchValues) {
  // F.interpolate([[1, 2], [3, 4]], size=(4, 4), mode="bilinear", align_corners=False)
  Tensor x = tensor(std::vector<float>{1, 2, 3, 4}, {1, 1, 2, 2});
  EXPECT_TRUE(all_close(upsample(x, 4, 4, "bilinear"), {1.00, 1.25, 1.75, 2.00, 1.50, 1.75, 2.25, 2.50,  //
                                                         2.50, 2.75, 3.25, 3.50, 3.00, 3.25, 3.75, 4.00}));
}

TEST(Gradcheck, AvgPool2d) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return avg_pool2d(v[0], 2); }, {leaf({2, 2, 4, 6})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return avg_pool2d(v[0], 3, 2, 1); }, {leaf({1, 2, 7, 6})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return avg_pool2d(v[0], 3, 1, 1); }, {leaf({1, 1, 4, 5})}));
}

TEST(Gradcheck, Upsample) {
  for (const char* mode : {"nearest", "bilinear"}) {
    SCOPED_TRACE(mode);
    EXPECT_TRUE(grads_ok([mode](const Ts& v) { return upsample(v[0], 7, 8, mode); }, {leaf({2, 2, 3, 4})}));
    EXPECT_TRUE(grads_ok([mode](const Ts& v) { return upsample(v[0], 3, 2, mode); }, {leaf({1, 2, 5, 6})}));
  }
}

TEST(PoolUpsampleErrors, NameTheOpAndShapes) {
  Tensor x = randn({1, 2, 4, 4});
  expect_error([&] { avg_pool2d(randn({2, 4, 4}), 2); }, "avg_pool2d: input must be [N, C, H, W], got [2,4,4]");
  expect_error([&] { avg_pool2d(x, 5); },
               "avg_pool2d: input [1,2,4,4] with padding 0 is too small for kernel 5: output size would be [0,0]");
  expect_error([&] { avg_pool2d(x, 2, 1, 2); }, "avg_pool2d: padding 2 must be between 0 and half the kernel 2");
  expect_error([&] { avg_pool2d(x, 0); }, "avg_pool2d: kernel 0 and stride 0 must be positive");
  expect_error([&] { avg_pool2d(x.to(DType::i32), 2); }, "avg_pool2d: needs a floating tensor");
  expect_error([&] { upsample(x, 8, 8, "bicubic"); }, "upsample: mode must be 'nearest' or 'bilinear', got 'bicubic'");
  expect_error([&] { upsample(x, 0, 8); }, "upsample: output size [0,8] must be positive");
  expect_error([&] { upsample(zeros({1, 2, 0, 4}), 2, 2); }, "upsample: input [1,2,0,4] has no pixels");
}

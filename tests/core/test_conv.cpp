// Convolutions: forward against direct loops from the definition, gradcheck
// of input, weight and bias, the transpose/adjoint identity, dtypes, errors.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

namespace {

Conv2dArgs args2d(std::array<int64_t, 2> stride, std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation,
                  int64_t groups = 1, std::array<int64_t, 2> output_padding = {0, 0}) {
  Conv2dArgs a;
  for (int d = 0; d < 2; ++d) {
    a.stride[d] = stride[d];
    a.padding[d] = padding[d];
    a.dilation[d] = dilation[d];
    a.output_padding[d] = output_padding[d];
  }
  a.groups = groups;
  return a;
}

// y[n, co, oh, ow] = b[co] + sum over ci, kh, kw of
//   x[n, g * Cin/G + ci, oh * s - p + kh * d, ow * s - p + kw * d] * w[co, ci, kh, kw].
Tensor ref_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dArgs& a) {
  const auto X = x.to_vector<double>(), W = w.to_vector<double>();
  const auto B = b.defined() ? b.to_vector<double>() : std::vector<double>(size_t(w.size(0)), 0.0);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), Wd = x.size(3);
  const int64_t Cout = w.size(0), Cg = w.size(1), KH = w.size(2), KW = w.size(3), G = a.groups;
  const int64_t OH = (H + 2 * a.padding[0] - a.dilation[0] * (KH - 1) - 1) / a.stride[0] + 1;
  const int64_t OW = (Wd + 2 * a.padding[1] - a.dilation[1] * (KW - 1) - 1) / a.stride[1] + 1;
  std::vector<double> y;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t co = 0; co < Cout; ++co)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const int64_t g = co / (Cout / G);
          double acc = B[size_t(co)];
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t ih = oh * a.stride[0] - a.padding[0] + kh * a.dilation[0];
                const int64_t iw = ow * a.stride[1] - a.padding[1] + kw * a.dilation[1];
                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd) continue;
                acc += X[size_t(((n * C + g * Cg + ci) * H + ih) * Wd + iw)] *
                       W[size_t(((co * Cg + ci) * KH + kh) * KW + kw)];
              }
          y.push_back(acc);
        }
  return tensor(y, {N, Cout, OH, OW});
}

// Each x[n, ci, h, w] scatters x * w[ci, co, kh, kw] to
//   y[n, g * Cout/G + co, h * s - p + kh * d, w * s - p + kw * d].
Tensor ref_conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dArgs& a) {
  const auto X = x.to_vector<double>(), W = w.to_vector<double>();
  const int64_t N = x.size(0), Cin = x.size(1), H = x.size(2), Wd = x.size(3);
  const int64_t Cg = w.size(1), KH = w.size(2), KW = w.size(3), G = a.groups, Cout = Cg * G;
  const int64_t OH = (H - 1) * a.stride[0] - 2 * a.padding[0] + a.dilation[0] * (KH - 1) + a.output_padding[0] + 1;
  const int64_t OW = (Wd - 1) * a.stride[1] - 2 * a.padding[1] + a.dilation[1] * (KW - 1) + a.output_padding[1] + 1;
  std::vector<double> y(size_t(N * Cout * OH * OW), 0.0);
  if (b.defined()) {
    const auto B = b.to_vector<double>();
    for (size_t i = 0; i < y.size(); ++i) y[i] = B[i / size_t(OH * OW) % size_t(Cout)];
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t ci = 0; ci < Cin; ++ci)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t v = 0; v < Wd; ++v)
          for (int64_t co = 0; co < Cg; ++co)
            for (int64_t kh = 0; kh < KH; ++kh)
              for (int64_t kw = 0; kw < KW; ++kw) {
                const int64_t oh = h * a.stride[0] - a.padding[0] + kh * a.dilation[0];
                const int64_t ow = v * a.stride[1] - a.padding[1] + kw * a.dilation[1];
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                const int64_t g = ci / (Cin / G);
                y[size_t(((n * Cout + g * Cg + co) * OH + oh) * OW + ow)] +=
                    X[size_t(((n * Cin + ci) * H + h) * Wd + v)] * W[size_t(((ci * Cg + co) * KH + kh) * KW + kw)];
              }
  return tensor(y, {N, Cout, OH, OW});
}

Conv2dArgs as_2d(const Conv1dArgs& a) {
  return args2d({1, a.stride}, {0, a.padding}, {1, a.dilation}, a.groups, {0, a.output_padding});
}

struct ConvCase {
  const char* name;
  Shape x, w;  // w as conv2d's [Cout, Cin/G, KH, KW] or conv_transpose2d's [Cin, Cout/G, KH, KW]
  Conv2dArgs args;
  bool bias;
};

}  // namespace

TEST(Conv2d, MatchesDirectLoops) {
  const std::vector<ConvCase> cases = {
      {"3x3", {2, 3, 8, 8}, {4, 3, 3, 3}, args2d({1, 1}, {0, 0}, {1, 1}), true},
      {"stride 2 padding 1", {2, 3, 9, 8}, {5, 3, 3, 3}, args2d({2, 2}, {1, 1}, {1, 1}), true},
      {"dilation 2", {1, 2, 10, 9}, {3, 2, 3, 3}, args2d({1, 1}, {2, 1}, {2, 2}), false},
      {"groups 2", {2, 4, 7, 7}, {6, 2, 3, 3}, args2d({1, 1}, {1, 1}, {1, 1}, 2), true},
      {"depthwise", {2, 4, 6, 6}, {4, 1, 3, 3}, args2d({1, 1}, {1, 1}, {1, 1}, 4), true},
      {"depthwise x2", {1, 3, 6, 5}, {6, 1, 3, 3}, args2d({2, 1}, {1, 0}, {1, 1}, 3), false},
      {"rectangular", {2, 3, 7, 9}, {4, 3, 2, 3}, args2d({2, 1}, {1, 0}, {1, 2}), true},
      {"1x1", {2, 5, 4, 3}, {3, 5, 1, 1}, args2d({1, 1}, {0, 0}, {1, 1}), true},
      {"kernel over padded image", {1, 2, 3, 3}, {2, 2, 5, 5}, args2d({1, 1}, {1, 1}, {1, 1}), false},
      {"stride beyond kernel", {1, 2, 9, 9}, {2, 2, 2, 2}, args2d({3, 3}, {0, 1}, {1, 1}), true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor x = randn(c.x, DType::f64), w = randn(c.w, DType::f64);
    Tensor b = c.bias ? randn({c.w[0]}, DType::f64) : Tensor();
    EXPECT_TRUE(all_close(conv2d(x, w, b, c.args), ref_conv2d(x, w, b, c.args), 1e-10, 1e-10));
  }
}

TEST(Conv2d, NonContiguousAndF32Inputs) {
  // A channels-last tensor viewed as NCHW; a transposed weight view.
  Tensor x = randn({2, 6, 5, 3}).permute({0, 3, 1, 2});
  Tensor w = randn({4, 3, 3, 3}).transpose(2, 3);
  Tensor b = randn({4});
  const Conv2dArgs a = args2d({1, 2}, {1, 1}, {1, 1});
  Tensor y = conv2d(x, w, b, a);
  EXPECT_EQ(y.dtype(), DType::f32);
  EXPECT_TRUE(all_close(y, ref_conv2d(x, w.contiguous(), b, a), 1e-4, 1e-4));
}

TEST(Conv2d, HalfTypesComputeInF32AndMixedPromote) {
  Tensor x = randn({1, 2, 5, 5}), w = randn({3, 2, 3, 3});
  Tensor xh = x.to(DType::bf16), wh = w.to(DType::bf16);
  Tensor y = conv2d(xh, wh);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_TRUE(all_close(y, conv2d(xh.to(DType::f32), wh.to(DType::f32)).to(DType::bf16), 0, 0));
  EXPECT_EQ(conv2d(x, w.to(DType::f64)).dtype(), DType::f64);
}

TEST(Conv2d, EmptyBatch) {
  Tensor x = zeros({0, 3, 6, 6}).requires_grad_(true), w = randn({4, 3, 3, 3}).requires_grad_(true);
  Tensor y = conv2d(x, w, randn({4}));
  EXPECT_EQ(y.shape(), (Shape{0, 4, 4, 4}));
  sum(y).backward();
  EXPECT_TRUE(all_close(w.grad(), zeros(w.shape())));
  EXPECT_EQ(conv_transpose2d(zeros({0, 4, 4, 4}), w).shape(), (Shape{0, 3, 6, 6}));
}

TEST(Conv2d, LargeBatchGoesThroughInChunks) {
  // 16 images of 144 x 16384 columns exceed the column buffer bound, so the
  // batch is split; every image must still match the single-image result.
  Tensor x = randn({16, 16, 128, 128}).requires_grad_(true), w = randn({2, 16, 3, 3}).requires_grad_(true);
  const Conv2dArgs a = args2d({1, 1}, {1, 1}, {1, 1});
  Tensor y = conv2d(x, w, Tensor(), a);
  Tensor r = randn(y.shape());
  sum(y * r).backward();
  for (int64_t n : {0, 7, 14, 15}) {
    SCOPED_TRACE(n);
    Tensor xn = x.detach().narrow(0, n, 1).requires_grad_(true), wn = w.detach().requires_grad_(true);
    Tensor yn = conv2d(xn, wn, Tensor(), a);
    EXPECT_TRUE(all_close(y.detach().narrow(0, n, 1), yn, 1e-5, 1e-5));
    sum(yn * r.narrow(0, n, 1)).backward();
    EXPECT_TRUE(all_close(x.grad().narrow(0, n, 1), xn.grad(), 1e-5, 1e-5));
  }
  // The weight gradient sums every image.
  Tensor dw_all = zeros(w.shape());
  for (int64_t n = 0; n < 16; ++n) {
    Tensor wn = w.detach().requires_grad_(true);
    sum(conv2d(x.detach().narrow(0, n, 1), wn, Tensor(), a) * r.narrow(0, n, 1)).backward();
    dw_all = dw_all + wn.grad();
  }
  EXPECT_TRUE(all_close(w.grad(), dw_all, 1e-3, 1e-2));
}

TEST(Conv1d, MatchesDirectLoops) {
  struct Case {
    Shape x, w;
    Conv1dArgs args;
    bool bias;
  };
  const std::vector<Case> cases = {
      {{2, 3, 10}, {4, 3, 3}, {}, true},
      {{2, 4, 11}, {6, 2, 3}, {.stride = 2, .padding = 1, .dilation = 1, .groups = 2}, true},
      {{1, 3, 12}, {3, 1, 4}, {.stride = 1, .padding = 3, .dilation = 2, .groups = 3}, false},
  };
  for (const auto& c : cases) {
    Tensor x = randn(c.x, DType::f64), w = randn(c.w, DType::f64);
    Tensor b = c.bias ? randn({c.w[0]}, DType::f64) : Tensor();
    Tensor y = conv1d(x, w, b, c.args);
    ASSERT_EQ(y.dim(), 3);
    EXPECT_TRUE(all_close(y, ref_conv2d(x.unsqueeze(2), w.unsqueeze(2), b, as_2d(c.args)).squeeze(2), 1e-10, 1e-10));
  }
}

TEST(ConvTranspose2d, MatchesDirectLoops) {
  const std::vector<ConvCase> cases = {
      {"3x3", {2, 3, 4, 4}, {3, 2, 3, 3}, args2d({1, 1}, {0, 0}, {1, 1}), true},
      {"stride 2 output_padding 1", {2, 3, 4, 5}, {3, 4, 3, 3}, args2d({2, 2}, {1, 1}, {1, 1}, 1, {1, 1}), true},
      {"dilation 2", {1, 2, 4, 3}, {2, 3, 3, 2}, args2d({1, 2}, {1, 0}, {2, 2}, 1, {0, 1}), false},
      {"output_padding below dilation", {1, 2, 3, 3}, {2, 2, 3, 3}, args2d({1, 1}, {0, 0}, {2, 2}, 1, {1, 1}), false},
      {"groups 2", {2, 4, 3, 3}, {4, 3, 3, 3}, args2d({2, 2}, {0, 1}, {1, 1}, 2), true},
      {"depthwise", {1, 3, 4, 4}, {3, 1, 2, 2}, args2d({2, 2}, {0, 0}, {1, 1}, 3), true},
      {"rectangular", {2, 2, 3, 5}, {2, 3, 2, 4}, args2d({3, 1}, {0, 2}, {1, 1}, 1, {2, 0}), true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor x = randn(c.x, DType::f64), w = randn(c.w, DType::f64);
    Tensor b = c.bias ? randn({c.w[1] * c.args.groups}, DType::f64) : Tensor();
    EXPECT_TRUE(all_close(conv_transpose2d(x, w, b, c.args), ref_conv_transpose2d(x, w, b, c.args), 1e-10, 1e-10));
  }
}

TEST(ConvTranspose1d, MatchesDirectLoops) {
  Tensor x = randn({2, 4, 6}, DType::f64), w = randn({4, 3, 3}, DType::f64), b = randn({6}, DType::f64);
  const Conv1dArgs a{.stride = 2, .padding = 1, .dilation = 2, .groups = 2, .output_padding = 1};
  Tensor y = conv_transpose1d(x, w, b, a);
  EXPECT_TRUE(all_close(y, ref_conv_transpose2d(x.unsqueeze(2), w.unsqueeze(2), b, as_2d(a)).squeeze(2), 1e-10, 1e-10));
}

TEST(ConvTranspose2d, IsTheAdjointOfConv2d) {
  // <conv(x, w), y> == <x, conv_transpose(y, w)> with one weight tensor.
  Tensor x = randn({2, 4, 9, 8}, DType::f64), w = randn({6, 2, 3, 2}, DType::f64);
  const Conv2dArgs a = args2d({2, 3}, {1, 1}, {2, 1}, 2);
  Tensor y = randn(conv2d(x, w, Tensor(), a).shape(), DType::f64);
  Conv2dArgs at = a;
  at.output_padding[0] = 9 - conv_transpose2d(y, w, Tensor(), a).size(2);
  at.output_padding[1] = 8 - conv_transpose2d(y, w, Tensor(), a).size(3);
  Tensor xt = conv_transpose2d(y, w, Tensor(), at);
  ASSERT_EQ(xt.shape(), x.shape());
  EXPECT_NEAR(sum(conv2d(x, w, Tensor(), a) * y).item(), sum(x * xt).item(), 1e-9);
}

TEST(Gradcheck, Conv2d) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return conv2d(v[0], v[1], v[2], args2d({2, 1}, {1, 1}, {1, 1}, 2)); },
                       {leaf({2, 4, 5, 6}), leaf({4, 2, 3, 2}), leaf({4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return conv2d(v[0], v[1], Tensor(), args2d({1, 2}, {2, 0}, {2, 1})); },
                       {leaf({1, 2, 6, 5}), leaf({3, 2, 3, 2})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return conv2d(v[0], v[1], v[2], args2d({1, 1}, {1, 1}, {1, 1}, 3)); },
                       {leaf({2, 3, 4, 4}), leaf({3, 1, 3, 3}), leaf({3})}));
}

TEST(Gradcheck, Conv1d) {
  const Conv1dArgs a{.stride = 2, .padding = 1, .dilation = 2, .groups = 2};
  EXPECT_TRUE(grads_ok([a](const Ts& v) { return conv1d(v[0], v[1], v[2], a); },
                       {leaf({2, 4, 9}), leaf({6, 2, 3}), leaf({6})}));
}

TEST(Gradcheck, ConvTranspose2d) {
  EXPECT_TRUE(grads_ok(
      [](const Ts& v) { return conv_transpose2d(v[0], v[1], v[2], args2d({2, 2}, {1, 0}, {1, 1}, 2, {1, 1})); },
      {leaf({2, 4, 3, 3}), leaf({4, 3, 3, 2}), leaf({6})}));
  EXPECT_TRUE(grads_ok(
      [](const Ts& v) { return conv_transpose2d(v[0], v[1], Tensor(), args2d({1, 2}, {1, 1}, {2, 1}, 1, {1, 0})); },
      {leaf({1, 2, 3, 4}), leaf({2, 2, 2, 3})}));
}

TEST(Gradcheck, ConvTranspose1d) {
  const Conv1dArgs a{.stride = 2, .padding = 1, .dilation = 2, .groups = 2, .output_padding = 1};
  EXPECT_TRUE(grads_ok([a](const Ts& v) { return conv_transpose1d(v[0], v[1], v[2], a); },
                       {leaf({2, 4, 5}), leaf({4, 3, 3}), leaf({6})}));
}

TEST(Gradcheck, ThroughHalfPrecisionCast) {
  // The f32 detour of bf16 is part of the graph: gradients reach the leaves.
  Tensor x = randn({1, 2, 4, 4}).to(DType::bf16).requires_grad_(true);
  Tensor w = randn({2, 2, 3, 3}).to(DType::bf16).requires_grad_(true);
  sum(conv2d(x, w)).backward();
  ASSERT_TRUE(x.grad().defined() && w.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::bf16);
  EXPECT_EQ(w.grad().shape(), w.shape());
}

TEST(ConvErrors, NameTheOpAndShapes) {
  Tensor x = randn({1, 3, 8, 8});
  expect_error([&] { conv2d(x, randn({4, 2, 3, 3})); },
               "conv2d: input [1,3,8,8] has 3 channels but weight [4,2,3,3] expects 2 (groups 1)");
  Conv2dArgs g2;
  g2.groups = 2;
  expect_error([&] { conv2d(randn({1, 4, 8, 8}), randn({3, 2, 3, 3}), Tensor(), g2); },
               "has 3 output channels, not divisible by groups 2");
  expect_error([&] { conv_transpose2d(x, randn({3, 2, 3, 3}), Tensor(), g2); },
               "conv_transpose2d: weight [3,2,3,3] has 3 input channels, not divisible by groups 2");
  expect_error([&] { conv_transpose2d(x, randn({4, 2, 3, 3})); },
               "conv_transpose2d: input [1,3,8,8] has 3 channels but weight [4,2,3,3] expects 4");
  expect_error([&] { conv2d(randn({1, 1, 2, 2}), randn({1, 1, 3, 3})); },
               "conv2d: input [1,1,2,2] with padding [0,0] is too small for kernel [3,3]");
  expect_error([&] { conv1d(randn({1, 1, 4}), randn({1, 1, 3}), Tensor(), {.dilation = 2}); },
               "conv1d: input [1,1,4] with padding 0 is too small for kernel 3");
  Conv2dArgs pad;
  pad.padding[0] = pad.padding[1] = 1;
  expect_error([&] { conv_transpose2d(randn({1, 1, 1, 1}), randn({1, 1, 1, 1}), Tensor(), pad); },
               "output size would be [-1,-1]");
  expect_error([&] { conv2d(x, randn({4, 3, 3, 3}), randn({3})); },
               "conv2d: bias [3] does not match the 4 output channels");
  expect_error([&] { conv2d(randn({3, 8, 8}), randn({4, 3, 3, 3})); },
               "conv2d: input must be [N, C, H, W], got [3,8,8]");
  expect_error([&] { conv1d(x, randn({4, 3, 3})); }, "conv1d: input must be [N, C, L]");
  Conv2dArgs op;
  op.stride[0] = op.stride[1] = 2;
  op.output_padding[0] = op.output_padding[1] = 2;
  expect_error([&] { conv_transpose2d(x, randn({3, 2, 3, 3}), Tensor(), op); },
               "output_padding [2,2] must be smaller than stride [2,2] or dilation [1,1]");
  op.output_padding[0] = op.output_padding[1] = 1;
  expect_error([&] { conv2d(x, randn({4, 3, 3, 3}), Tensor(), op); },
               "output_padding [1,1] applies to transposed convolutions only");
  Conv2dArgs bad;
  bad.groups = 0;
  expect_error([&] { conv2d(x, randn({4, 3, 3, 3}), Tensor(), bad); }, "groups must be positive");
  bad.groups = 1;
  bad.stride[1] = 0;
  expect_error([&] { conv2d(x, randn({4, 3, 3, 3}), Tensor(), bad); }, "must be positive");
  expect_error([&] { conv2d(x.to(DType::i64), randn({4, 3, 3, 3})); }, "needs floating tensors");
}

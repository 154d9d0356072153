// cat, stack, split, chunk and pad: forward against naive loops on random
// inputs, gradients by finite differences, and error messages.
#include <algorithm>

#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::coords;
using fm::test::error_of;
using fm::test::grads_ok;
using fm::test::leaf;
using fm::test::linear;
using Ts = std::vector<Tensor>;

namespace {

// cat by walking the output and finding which input each element comes from.
std::vector<double> naive_cat(const Ts& ts, int d) {
  Shape out = ts[0].shape();
  out[d] = 0;
  for (const Tensor& t : ts) out[d] += t.size(d);
  std::vector<double> r;
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> c = coords(i, out);
    size_t k = 0;
    while (c[size_t(d)] >= ts[k].size(d)) c[size_t(d)] -= ts[k++].size(d);
    r.push_back(ts[k].to_vector<double>()[size_t(linear(c, ts[k].shape()))]);
  }
  return r;
}

// torch.nn.functional.pad written element by element.
std::vector<double> naive_pad(const Tensor& x, const std::vector<int64_t>& pads, const std::string& mode,
                              double value) {
  Shape out = x.shape();
  const int nd = x.dim(), np = int(pads.size() / 2);
  for (int p = 0; p < np; ++p) out[nd - 1 - p] += pads[size_t(2 * p)] + pads[size_t(2 * p + 1)];
  const std::vector<double> xv = x.to_vector<double>();
  std::vector<double> r;
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> c = coords(i, out);
    bool outside = false;
    for (int p = 0; p < np; ++p) {
      const int d = nd - 1 - p;
      const int64_t n = x.size(d);
      int64_t s = c[size_t(d)] - pads[size_t(2 * p)];
      if (mode == "reflect") s = s < 0 ? -s : (s >= n ? 2 * (n - 1) - s : s);
      if (mode == "replicate") s = std::clamp<int64_t>(s, 0, n - 1);
      outside = outside || s < 0 || s >= n;
      c[size_t(d)] = s;
    }
    r.push_back(outside ? value : xv[size_t(linear(c, x.shape()))]);
  }
  return r;
}

}  // namespace

TEST(Cat, MatchesNaiveAlongEveryDim) {
  for (int d = 0; d < 3; ++d) {
    Shape a{2, 3, 4}, b{2, 3, 4}, c{2, 3, 4};
    b[d] = 5;
    c[d] = 1;
    Ts ts{randn(a, DType::f64), randn(b, DType::f64), randn(c, DType::f64)};
    EXPECT_TRUE(all_close(cat(ts, d), naive_cat(ts, d), 0, 0)) << "dim " << d;
    EXPECT_TRUE(all_close(cat(ts, d - 3), naive_cat(ts, d), 0, 0)) << "dim " << d - 3;
  }
}

TEST(Cat, StridedInputsPromotionAndEmpty) {
  // Transposed and sliced views are copied as they read.
  Tensor a = randn({4, 3}).t(), b = randn({2, 8}).slice(1, 0, 8, 2);
  EXPECT_FALSE(a.is_contiguous());
  EXPECT_TRUE(all_close(cat({a, b}, 0), naive_cat({a.contiguous(), b.contiguous()}, 0), 0, 0));
  // Types promote as in PyTorch.
  Tensor i = tensor(std::vector<int32_t>{1, 2}), f = tensor(std::vector<float>{0.5f}),
         g = tensor(std::vector<double>{0.25});
  EXPECT_EQ(cat({i, i}).dtype(), DType::i32);
  EXPECT_EQ(cat({i, f}).dtype(), DType::f32);
  EXPECT_TRUE(all_close(cat({i, f, g}), {1, 2, 0.5, 0.25}));
  // 1-D empty tensors are skipped, as an empty accumulator.
  Tensor m = randn({2, 3});
  EXPECT_TRUE(all_close(cat({zeros({0}), m, zeros({0})}, 1), m, 0, 0));
  EXPECT_EQ(cat({zeros({0}), zeros({0})}).shape(), Shape({0}));
  EXPECT_EQ(cat({m, zeros({0, 3})}).shape(), Shape({2, 3}));
  // All kinds of data move.
  Tensor bools = tensor(std::vector<uint8_t>{1, 0}).to(DType::b8);
  EXPECT_EQ(cat({bools, bools}).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1, 0}));
}

TEST(Cat, Gradients) {
  Tensor a = leaf({2, 3}), b = leaf({2, 1}), c = leaf({2, 4});
  EXPECT_TRUE(grads_ok([](const Ts& v) { return cat(v, 1); }, {a, b, c}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return cat({v[0].t(), v[1].t()}, 0) * 2.0; }, {a, b}));
  // The same tensor twice gets both slices' gradients.
  EXPECT_TRUE(grads_ok([](const Ts& v) { return cat({v[0], v[0]}, -1); }, {a}));
  // Each input receives its gradient in its own dtype.
  Tensor f = randn({3}).requires_grad_(true), d = randn({2}, DType::f64).requires_grad_(true);
  Tensor out = cat({f, d});
  EXPECT_EQ(out.dtype(), DType::f64);
  (out * arange(1, 6, 1, DType::f64)).sum().backward();
  EXPECT_EQ(f.grad().dtype(), DType::f32);
  EXPECT_TRUE(all_close(f.grad(), {1, 2, 3}));
  EXPECT_TRUE(all_close(d.grad(), {4, 5}));
}

TEST(Cat, Errors) {
  EXPECT_EQ(error_of([] { cat({zeros({2, 3}), zeros({2, 4})}, 0); }),
            "cat: tensor 1 has shape [2,4] but tensor 0 has [2,3] (all dims but 0 must match)");
  EXPECT_EQ(error_of([] { cat({zeros({2, 3}), zeros({2, 3, 1})}, 1); }),
            "cat: tensor 1 has shape [2,3,1] but tensor 0 has [2,3] (all dims but 1 must match)");
  EXPECT_EQ(error_of([] { cat({}, 0); }), "cat: expects a non-empty list of tensors");
  EXPECT_NE(error_of([] { cat({zeros({2}), zeros({2})}, 1); }).find("cat"), std::string::npos);
  EXPECT_NE(error_of([] { cat({scalar_tensor(1), scalar_tensor(2)}); }).find("scalar"), std::string::npos);
}

TEST(Stack, MatchesUnsqueezeAndGrad) {
  Ts ts{randn({2, 3}, DType::f64), randn({2, 3}, DType::f64), randn({2, 3}, DType::f64).t().contiguous().t()};
  for (int d = -3; d < 3; ++d) {
    const int pos = d < 0 ? d + 3 : d;
    Tensor s = stack(ts, d);
    Shape expect{2, 3};
    expect.insert(pos, 3);
    ASSERT_EQ(s.shape(), expect);
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(all_close(s.select(pos, k), ts[size_t(k)], 0, 0));
  }
  EXPECT_TRUE(grads_ok([](const Ts& v) { return stack(v, 1); }, {leaf({2, 3}), leaf({2, 3})}));
  EXPECT_EQ(error_of([] { stack({zeros({2, 3}), zeros({3, 2})}); }),
            "stack: tensor 1 has shape [3,2] but tensor 0 has [2,3] (all shapes must match)");
  EXPECT_EQ(error_of([] { stack({}); }), "stack: expects a non-empty list of tensors");
}

TEST(Split, PiecesAreViews) {
  Tensor x = randn({10, 3});
  Ts p = split(x, 4);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[2].shape(), Shape({2, 3}));
  EXPECT_EQ(p[1].data_ptr(), x.select(0, 4).data_ptr());  // shares storage
  EXPECT_TRUE(all_close(cat(p), x, 0, 0));
  Ts q = split(x, {1, 0, 2}, -1);
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q[1].shape(), Shape({10, 0}));
  EXPECT_TRUE(all_close(q[2], x.slice(1, 1, 3), 0, 0));
  EXPECT_EQ(split(zeros({0, 2}), 3).size(), 1u);
  EXPECT_EQ(error_of([&] { split(x, {3, 3}, 1); }), "split: sizes [3,3] sum to 6 but dim 1 of [10,3] has size 3");
  EXPECT_THROW(split(x, 0), Error);
  EXPECT_TRUE(grads_ok([](const Ts& v) {
    Ts s = split(v[0], {2, 3}, 1);
    return cat({s[1] * 3.0, s[0]}, 1);
  }, {leaf({2, 5})}));
}

TEST(Chunk, SizesAsPyTorch) {
  auto sizes = [](int64_t n, int64_t chunks) {
    std::vector<int64_t> s;
    for (const Tensor& t : chunk(zeros({3, n}), chunks, 1)) s.push_back(t.size(1));
    return s;
  };
  EXPECT_EQ(sizes(10, 3), (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(sizes(6, 3), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(6, 4), (std::vector<int64_t>{2, 2, 2}));  // fewer pieces, as torch.chunk
  EXPECT_EQ(sizes(2, 5), (std::vector<int64_t>{1, 1}));
  EXPECT_THROW(chunk(zeros({3}), 0), Error);
  EXPECT_TRUE(grads_ok([](const Ts& v) { return chunk(v[0], 3, 0)[1]; }, {leaf({7, 2})}));
}

TEST(Pad, MatchesNaiveForEveryMode) {
  const std::vector<std::vector<int64_t>> cases = {
      {1, 2}, {0, 3, 2, 0}, {2, 1, 1, 2, 1, 1}, {-1, 2}, {2, -3, -1, 1}, {-2, -1, 0, 0, 1, 1}, {0, 0}};
  Tensor x = randn({2, 3, 4, 5}, DType::f64);
  Tensor xt = randn({2, 3, 5, 4}, DType::f64).transpose(2, 3);  // strided input
  for (const auto& pads : cases)
    for (const char* mode : {"constant", "reflect", "replicate"})
      for (const Tensor& in : {x, xt}) {
        Tensor out = pad(in, pads, mode, 1.5);
        EXPECT_TRUE(all_close(out, naive_pad(in, pads, mode, 1.5), 0, 0)) << mode << " " << Shape(pads);
      }
  // Integer data, and padding that crops a dim away entirely.
  Tensor ints = randint(0, 9, {3, 4}, DType::i32);
  EXPECT_TRUE(all_close(pad(ints, {1, 1, 2, 0}, "constant", 7), naive_pad(ints, {1, 1, 2, 0}, "constant", 7), 0, 0));
  EXPECT_TRUE(all_close(pad(ints, {-5, 2}, "constant", 3), std::vector<double>(3, 3.0)));
  EXPECT_EQ(pad(ints, {-5, 2}).shape(), Shape({3, 1}));
}

TEST(Pad, Gradients) {
  Tensor x = leaf({2, 3, 4});
  for (const char* mode : {"constant", "reflect", "replicate"}) {
    EXPECT_TRUE(grads_ok([mode](const Ts& v) { return pad(v[0], {2, 3}, mode); }, {x})) << mode;
    EXPECT_TRUE(grads_ok([mode](const Ts& v) { return pad(v[0], {1, -1, 2, 1}, mode); }, {x})) << mode;
    EXPECT_TRUE(grads_ok([mode](const Ts& v) { return pad(v[0].transpose(0, 2), {-1, 1, 1, 0, 2, 2}, mode); }, {x}))
        << mode;
  }
  EXPECT_TRUE(grads_ok([](const Ts& v) { return pad(v[0], {-3, 2}, "constant", 2.0); }, {leaf({2, 2})}));
}

TEST(Pad, Errors) {
  Tensor x = zeros({2, 3});
  EXPECT_EQ(error_of([&] { pad(x, {1}); }), "pad: pads must come in (left, right) pairs, got 1 values");
  EXPECT_EQ(error_of([&] { pad(x, {3, 0}, "reflect"); }),
            "pad: reflect padding (3, 0) must be smaller than dim 1 of size 3 in [2,3]");
  EXPECT_EQ(error_of([&] { pad(x, {1, 1}, "circular"); }),
            "pad: mode must be 'constant', 'reflect' or 'replicate', got 'circular'");
  EXPECT_EQ(error_of([&] { pad(x, {0, 0, 0, 0, 1, 1}); }), "pad: 3 padded dims for a tensor of shape [2,3]");
  EXPECT_EQ(error_of([&] { pad(x, {-2, -2}); }),
            "pad: padding (-2, -2) of dim 1 (size 3) of [2,3] gives a negative size");
}

// softmax, log_softmax, layer_norm, rms_norm, group_norm, normalize: forward
// against naive double loops, gradcheck of every differentiable input, bf16
// against f32, errors.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;
using Vec = std::vector<double>;

namespace {

// x seen as [outer, n, inner] around `dim`.
struct Split {
  int64_t outer = 1, n = 1, inner = 1;
  Split(const Shape& s, int dim) {
    for (int i = 0; i < s.size(); ++i) (i < dim ? outer : i == dim ? n : inner) *= s[i];
  }
  size_t at(int64_t o, int64_t j, int64_t i) const { return size_t((o * n + j) * inner + i); }
};

Vec naive_softmax(const Tensor& x, int dim, bool log) {
  const Vec v = x.to_vector<double>();
  const Split s(x.shape(), dim);
  Vec out(v.size());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < s.n; ++j) m = std::max(m, v[s.at(o, j, i)]);
      for (int64_t j = 0; j < s.n; ++j) z += std::exp(v[s.at(o, j, i)] - m);
      for (int64_t j = 0; j < s.n; ++j) {
        const double a = v[s.at(o, j, i)] - m;
        out[s.at(o, j, i)] = log ? a - std::log(z) : std::exp(a) / z;
      }
    }
  return out;
}

// layer_norm (rms = false) or rms_norm over rows of n; w, b may be empty.
Vec naive_norm(const Tensor& x, int64_t n, const Vec& w, const Vec& b, double eps, bool rms) {
  const Vec v = x.to_vector<double>();
  Vec out(v.size());
  for (size_t r = 0; r < v.size() / size_t(n); ++r) {
    const double* row = v.data() + r * size_t(n);
    double mu = 0, ss = 0;
    if (!rms) {
      for (int64_t i = 0; i < n; ++i) mu += row[i];
      mu /= double(n);
    }
    for (int64_t i = 0; i < n; ++i) ss += (row[i] - mu) * (row[i] - mu);
    const double rs = 1 / std::sqrt(ss / double(n) + eps);
    for (int64_t i = 0; i < n; ++i)
      out[r * size_t(n) + size_t(i)] =
          (row[i] - mu) * rs * (w.empty() ? 1 : w[size_t(i)]) + (b.empty() ? 0 : b[size_t(i)]);
  }
  return out;
}

Vec naive_group_norm(const Tensor& x, int64_t groups, const Vec& w, const Vec& b, double eps) {
  const Vec v = x.to_vector<double>();
  const int64_t N = x.size(0), C = x.size(1), S = x.numel() / (N * C), cg = C / groups;
  Vec out(v.size());
  for (int64_t nn = 0; nn < N; ++nn)
    for (int64_t g = 0; g < groups; ++g) {
      auto idx = [&](int64_t c, int64_t s) { return size_t((nn * C + g * cg + c) * S + s); };
      double mu = 0, ss = 0;
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t s = 0; s < S; ++s) mu += v[idx(c, s)];
      mu /= double(cg * S);
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t s = 0; s < S; ++s) ss += (v[idx(c, s)] - mu) * (v[idx(c, s)] - mu);
      const double rs = 1 / std::sqrt(ss / double(cg * S) + eps);
      for (int64_t c = 0; c < cg; ++c)
        for (int64_t s = 0; s < S; ++s) {
          const size_t ch = size_t(g * cg + c);
          out[idx(c, s)] = (v[idx(c, s)] - mu) * rs * (w.empty() ? 1 : w[ch]) + (b.empty() ? 0 : b[ch]);
        }
    }
  return out;
}

Vec naive_normalize(const Tensor& x, int dim, double eps) {
  const Vec v = x.to_vector<double>();
  const Split s(x.shape(), dim);
  Vec out(v.size());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double ss = 0;
      for (int64_t j = 0; j < s.n; ++j) ss += v[s.at(o, j, i)] * v[s.at(o, j, i)];
      const double d = std::max(std::sqrt(ss), eps);
      for (int64_t j = 0; j < s.n; ++j) out[s.at(o, j, i)] = v[s.at(o, j, i)] / d;
    }
  return out;
}

double tol(DType t) { return t == DType::f64 ? 1e-12 : 2e-5; }

}  // namespace

// ---- softmax

TEST(Softmax, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64})
    for (bool log : {false, true})
      for (int dim : {0, 1, 2}) {
        Tensor x = randn({4, 7, 5}, t) * 3.0;
        Tensor y = log ? log_softmax(x, dim) : softmax(x, dim);
        EXPECT_EQ(y.shape(), x.shape());
        EXPECT_EQ(y.dtype(), t);
        EXPECT_TRUE(all_close(y, naive_softmax(x, dim, log), tol(t), tol(t))) << "dim " << dim << " log " << log;
      }
  // A long row and a negative dim.
  Tensor x = randn({3, 3000});
  EXPECT_TRUE(all_close(softmax(x, -1), naive_softmax(x, 1, false), 1e-5, 1e-7));
  // A transposed (non-contiguous) input.
  Tensor xt = randn({6, 9}, DType::f64).t();
  EXPECT_TRUE(all_close(log_softmax(xt, 1), naive_softmax(xt, 1, true), 1e-12, 1e-12));
  // A 0-dim input is one row of one element (as PyTorch).
  EXPECT_EQ(softmax(scalar_tensor(3.0), 0).item(), 1.0);
}

TEST(Softmax, StableForLargeLogits) {
  // exp(1000) overflows f32 and f64: the max must be subtracted first. (The
  // tolerance allows for the rounding of x + 1000 in f32.)
  Tensor x = randn({5, 33});
  EXPECT_TRUE(all_close(softmax(x + 1000.0, 1), softmax(x, 1), 1e-3, 1e-6));
  EXPECT_TRUE(all_close(log_softmax(x - 1000.0, 1), log_softmax(x, 1), 1e-3, 1e-3));
  Tensor xd = randn({5, 33}, DType::f64);
  EXPECT_TRUE(all_close(softmax(xd + 1000.0, 1), softmax(xd, 1), 1e-11, 1e-12));
  Tensor rows = sum(softmax(x * 50.0, 1), {1});
  EXPECT_TRUE(all_close(rows, Vec(5, 1.0), 1e-5, 1e-5));
}

TEST(Softmax, Gradcheck) {
  for (bool log : {false, true}) {
    auto f = [log](int dim) {
      return [log, dim](const Ts& v) { return log ? log_softmax(v[0], dim) : softmax(v[0], dim); };
    };
    EXPECT_TRUE(grads_ok(f(1), {leaf({3, 6})}));
    EXPECT_TRUE(grads_ok(f(-1), {leaf({2, 3, 4})}));
    EXPECT_TRUE(grads_ok(f(0), {leaf({5, 2, 3})}));
    EXPECT_TRUE(grads_ok(f(1), {leaf({2, 4, 3})}));
    EXPECT_TRUE(grads_ok(f(0), {leaf({7})}));
  }
  // Composed with other ops (the gradient reaching softmax is not contiguous).
  EXPECT_TRUE(grads_ok([](const Ts& v) { return softmax(v[0], 0).t() * 2.0; }, {leaf({4, 3})}));
}

TEST(Softmax, HalfTypesMatchF32) {
  for (DType half : {DType::bf16, DType::f16}) {
    Tensor x = randn({16, 300}).to(half);
    Tensor y = softmax(x, 1);
    EXPECT_EQ(y.dtype(), half);
    EXPECT_TRUE(all_close(y.to(DType::f32), softmax(x.to(DType::f32), 1), 1e-2, 1e-4)) << name(half);
    EXPECT_TRUE(all_close(log_softmax(x, 0).to(DType::f32), log_softmax(x.to(DType::f32), 0), 1e-2, 2e-2));
  }
  Tensor x = randn({16, 300}).to(DType::bf16);
  Tensor xg = x.detach().requires_grad_(true);
  (softmax(xg, 1) * randn({16, 300}).to(DType::bf16)).sum().backward();
  EXPECT_EQ(xg.grad().dtype(), DType::bf16);
}

TEST(Softmax, Errors) {
  expect_error([] { softmax(tensor(std::vector<int64_t>{1, 2}), 0); }, "softmax");
  expect_error([] { log_softmax(randn({2, 3}), 2); }, "log_softmax");
}

// ---- layer_norm

TEST(LayerNorm, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64}) {
    Tensor x = randn({6, 10}, t) * 2.0 + 3.0;
    Tensor w = randn({10}, t), b = randn({10}, t);
    const Vec wv = w.to_vector<double>(), bv = b.to_vector<double>();
    EXPECT_TRUE(all_close(layer_norm(x, {10}, w, b), naive_norm(x, 10, wv, bv, 1e-5, false), tol(t), tol(t)));
    EXPECT_TRUE(all_close(layer_norm(x, {10}, w), naive_norm(x, 10, wv, {}, 1e-5, false), tol(t), tol(t)));
    EXPECT_TRUE(all_close(layer_norm(x, {10}, Tensor(), b), naive_norm(x, 10, {}, bv, 1e-5, false), tol(t), tol(t)));
    EXPECT_TRUE(all_close(layer_norm(x, {10}, {}, {}, 0.1), naive_norm(x, 10, {}, {}, 0.1, false), tol(t), tol(t)));
  }
  // Two normalised dims, leading batch dims, a non-contiguous input.
  Tensor x = randn({2, 3, 4, 5}, DType::f64);
  Tensor w = randn({4, 5}, DType::f64), b = randn({4, 5}, DType::f64);
  Tensor y = layer_norm(x, {4, 5}, w, b);
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_TRUE(all_close(y, naive_norm(x, 20, w.to_vector<double>(), b.to_vector<double>(), 1e-5, false), 1e-12,
                        1e-12));
  Tensor xt = randn({8, 12}, DType::f64).t();
  EXPECT_TRUE(all_close(layer_norm(xt, {8}), naive_norm(xt, 8, {}, {}, 1e-5, false), 1e-12, 1e-12));
  // Wide rows (a transformer's hidden size) in f32, with a large offset.
  Tensor wide = randn({64, 768}) + 100.0;
  EXPECT_TRUE(all_close(layer_norm(wide, {768}), naive_norm(wide, 768, {}, {}, 1e-5, false), 1e-4, 1e-4));
}

TEST(LayerNorm, Gradcheck) {
  auto ln = [](const Shape& ns) {
    return [ns](const Ts& v) { return layer_norm(v[0], ns, v[1], v[2]); };
  };
  EXPECT_TRUE(grads_ok(ln({5}), {leaf({3, 5}), leaf({5}), leaf({5})}));
  EXPECT_TRUE(grads_ok(ln({3, 4}), {leaf({2, 3, 4}), leaf({3, 4}), leaf({3, 4})}));
  EXPECT_TRUE(grads_ok(ln({6}), {leaf({6}), leaf({6}), leaf({6})}));
  EXPECT_TRUE(grads_ok(ln({2}), {leaf({70, 2}), leaf({2}), leaf({2})}));  // more rows than row blocks
  EXPECT_TRUE(grads_ok([](const Ts& v) { return layer_norm(v[0], {4}, v[1]); }, {leaf({3, 4}), leaf({4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return layer_norm(v[0], {4}); }, {leaf({3, 4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return layer_norm(v[0], {3}, Tensor(), v[1]); }, {leaf({2, 3}), leaf({3})}));
  // Only the parameters need grad; and a transposed input.
  Tensor x = randn({4, 5}, DType::f64);
  EXPECT_TRUE(grads_ok([x](const Ts& v) { return layer_norm(x, {5}, v[0], v[1]); }, {leaf({5}), leaf({5})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return layer_norm(v[0].t(), {3}, v[1]); }, {leaf({3, 4}), leaf({3})}));
}

TEST(LayerNorm, ParamGradsDoNotDependOnThreadCount) {
  Tensor x = randn({1000, 96}), g = randn({1000, 96});
  auto grads = [&](int threads) {
    set_num_threads(threads);
    Tensor w = ones({96}).requires_grad_(true), b = zeros({96}).requires_grad_(true);
    (layer_norm(x, {96}, w, b) * g).sum().backward();
    return std::pair{w.grad().to_vector<float>(), b.grad().to_vector<float>()};
  };
  const int before = get_num_threads();
  auto one = grads(1), two = grads(2);
  set_num_threads(before);
  EXPECT_EQ(one.first, two.first);
  EXPECT_EQ(one.second, two.second);
}

TEST(LayerNorm, Bf16MatchesF32) {
  Tensor x = randn({32, 200}).to(DType::bf16);
  Tensor w = randn({200}).to(DType::bf16), b = randn({200}).to(DType::bf16);
  Tensor y = layer_norm(x, {200}, w, b);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_TRUE(all_close(y.to(DType::f32), layer_norm(x.to(DType::f32), {200}, w.to(DType::f32), b.to(DType::f32)),
                        2e-2, 5e-2));
  // f32 weights with bf16 data: the weight gradient comes back in f32.
  Tensor wf = ones({200}).requires_grad_(true);
  layer_norm(x, {200}, wf).to(DType::f32).sum().backward();
  EXPECT_EQ(wf.grad().dtype(), DType::f32);
}

TEST(LayerNorm, Errors) {
  Tensor x = randn({2, 3});
  expect_error([&] { layer_norm(x, {4}); }, "layer_norm: input [2,3] does not end with normalized_shape [4]");
  expect_error([&] { layer_norm(x, {2, 3, 3}); }, "does not end with normalized_shape");
  expect_error([&] { layer_norm(x, {3}, randn({4})); }, "weight [4] differs from normalized_shape [3]");
  expect_error([&] { layer_norm(x, {3}, Tensor(), randn({2, 3})); }, "bias [2,3]");
  expect_error([&] { layer_norm(x, {}); }, "at least one dim");
  expect_error([] { layer_norm(tensor(std::vector<int32_t>{1, 2}), {2}); }, "floating");
}

// ---- rms_norm

TEST(RmsNorm, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64}) {
    Tensor x = randn({5, 16}, t) + 0.5;
    Tensor w = randn({16}, t);
    EXPECT_TRUE(all_close(rms_norm(x, {16}, w), naive_norm(x, 16, w.to_vector<double>(), {}, 1e-6, true), tol(t),
                          tol(t)));
    EXPECT_TRUE(all_close(rms_norm(x, {16}), naive_norm(x, 16, {}, {}, 1e-6, true), tol(t), tol(t)));
  }
  Tensor x = randn({2, 3, 4}, DType::f64);
  EXPECT_TRUE(all_close(rms_norm(x, {3, 4}, {}, 0.5), naive_norm(x, 12, {}, {}, 0.5, true), 1e-12, 1e-12));
}

TEST(RmsNorm, Gradcheck) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return rms_norm(v[0], {5}, v[1]); }, {leaf({3, 5}), leaf({5})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return rms_norm(v[0], {2, 3}, v[1]); }, {leaf({4, 2, 3}), leaf({2, 3})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return rms_norm(v[0], {4}); }, {leaf({2, 4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return rms_norm(v[0], {3}, v[1]); }, {leaf({100, 3}), leaf({3})}));
}

TEST(RmsNorm, Bf16MatchesF32) {
  Tensor x = randn({8, 128}).to(DType::bf16), w = randn({128}).to(DType::bf16);
  Tensor y = rms_norm(x, {128}, w);
  EXPECT_EQ(y.dtype(), DType::bf16);
  EXPECT_TRUE(all_close(y.to(DType::f32), rms_norm(x.to(DType::f32), {128}, w.to(DType::f32)), 2e-2, 5e-2));
}

TEST(RmsNorm, Errors) {
  expect_error([] { rms_norm(randn({2, 3}), {2}); }, "rms_norm: input [2,3] does not end with normalized_shape [2]");
  expect_error([] { rms_norm(randn({2, 3}), {3}, randn({2})); }, "rms_norm: weight [2]");
}

// ---- group_norm

TEST(GroupNorm, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64}) {
    Tensor x = randn({2, 6, 4, 3}, t) * 2.0 + 1.0;
    Tensor w = randn({6}, t), b = randn({6}, t);
    const Vec wv = w.to_vector<double>(), bv = b.to_vector<double>();
    for (int64_t groups : {1, 2, 3, 6})
      EXPECT_TRUE(all_close(group_norm(x, groups, w, b), naive_group_norm(x, groups, wv, bv, 1e-5), tol(t) * 10,
                            tol(t) * 10))
          << "groups " << groups;
    EXPECT_TRUE(all_close(group_norm(x, 2), naive_group_norm(x, 2, {}, {}, 1e-5), tol(t) * 10, tol(t) * 10));
  }
  Tensor x2 = randn({3, 8}, DType::f64);  // no spatial dims
  EXPECT_TRUE(all_close(group_norm(x2, 4), naive_group_norm(x2, 4, {}, {}, 1e-5), 1e-12, 1e-12));
}

TEST(GroupNorm, Gradcheck) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return group_norm(v[0], 2, v[1], v[2]); },
                       {leaf({2, 4, 3}), leaf({4}), leaf({4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return group_norm(v[0], 3, v[1], v[2]); },
                       {leaf({1, 6, 2, 2}), leaf({6}), leaf({6})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return group_norm(v[0], 1); }, {leaf({2, 3, 5})}));
}

TEST(GroupNorm, Errors) {
  expect_error([] { group_norm(randn({2, 6, 4}), 4); }, "group_norm: 6 channels of input [2,6,4] do not split into 4");
  expect_error([] { group_norm(randn({6}), 2); }, "must be [N, C, *]");
  expect_error([] { group_norm(randn({2, 6, 4}), 3, randn({4})); }, "group_norm: weight [4]");
}

// ---- normalize

TEST(Normalize, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64})
    for (int dim : {0, 1, 2}) {
      Tensor x = randn({3, 4, 5}, t);
      EXPECT_TRUE(all_close(normalize(x, dim), naive_normalize(x, dim, 1e-12), tol(t), tol(t)));
    }
  Tensor small = randn({4, 3}, DType::f64) * 1e-3;
  EXPECT_TRUE(all_close(normalize(small, -1, 0.01), naive_normalize(small, 1, 0.01), 1e-12, 1e-12));
}

TEST(Normalize, Gradcheck) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return normalize(v[0]); }, {leaf({3, 4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return normalize(v[0], 0); }, {leaf({3, 4, 2})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return normalize(v[0], 1, 0.5); }, {leaf({3, 4}, 0.05)}));
}

TEST(Normalize, ZeroRowHasFiniteGradient) {
  // As PyTorch: y = x / eps there, so dy/dx = 1 / eps (not NaN from the norm's sqrt).
  Tensor x = zeros({2, 3}).requires_grad_(true);
  Tensor y = normalize(x, -1, 1e-3);
  EXPECT_TRUE(all_close(y, Vec(6, 0.0), 0, 0));
  y.sum().backward();
  EXPECT_TRUE(all_close(x.grad(), Vec(6, 1e3), 1e-5, 0));
}

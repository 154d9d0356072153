// rotary_embedding against its formula, gradcheck, norm preservation;
// dropout's Philox mask (thread-count independent), keep rate, scaling,
// gradient and eval mode.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

namespace {

// out_i = x_i cos - x_{i+D/2} sin, out_{i+D/2} = x_{i+D/2} cos + x_i sin,
// angle = (start + t) * theta^(-2i/D).
std::vector<double> naive_rotary(const Tensor& x, int64_t start, double theta) {
  const int64_t T = x.size(2), D = x.size(3), rows = x.numel() / D;
  const auto v = x.to_vector<double>();
  std::vector<double> out(v.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = double(start + r % T) * std::pow(theta, -2.0 * double(i) / double(D));
      const double a = v[size_t(r * D + i)], b = v[size_t(r * D + i + D / 2)];
      out[size_t(r * D + i)] = a * std::cos(angle) - b * std::sin(angle);
      out[size_t(r * D + i + D / 2)] = b * std::cos(angle) + a * std::sin(angle);
    }
  return out;
}

}  // namespace

TEST(Rotary, MatchesFormula) {
  Tensor x = randn({2, 3, 37, 16}, DType::f64);
  EXPECT_TRUE(all_close(rotary_embedding(x), naive_rotary(x, 0, 10000.0), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(rotary_embedding(x, 5, 500.0), naive_rotary(x, 5, 500.0), 1e-12, 1e-12));
  Tensor xf = x.to(DType::f32);
  EXPECT_TRUE(all_close(rotary_embedding(xf, 100), naive_rotary(xf, 100, 10000.0), 1e-5, 1e-5));
  // A [B,T,H,D] tensor transposed to [B,H,T,D] (not contiguous).
  Tensor xt = randn({2, 37, 3, 16}).transpose(1, 2);
  EXPECT_TRUE(all_close(rotary_embedding(xt, 7), naive_rotary(xt, 7, 10000.0), 1e-5, 1e-5));
  Tensor xb = xf.to(DType::bf16);
  EXPECT_EQ(rotary_embedding(xb).dtype(), DType::bf16);
  EXPECT_TRUE(all_close(rotary_embedding(xb).to(DType::f32), naive_rotary(xb, 0, 10000.0), 1e-2, 1e-2));
}

TEST(Rotary, PositionZeroIsIdentityAndNormsArePreserved) {
  Tensor x = randn({1, 2, 1, 8}, DType::f64);
  EXPECT_TRUE(all_close(rotary_embedding(x), x, 0, 0));
  Tensor y = randn({2, 2, 50, 32}, DType::f64);
  EXPECT_TRUE(all_close(sum(square(rotary_embedding(y, 3)), {-1}), sum(square(y), {-1}), 1e-12, 1e-12));
}

TEST(Rotary, Gradcheck) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return rotary_embedding(v[0], 2, 100.0); }, {leaf({2, 2, 5, 6})}));
}

TEST(Rotary, Errors) {
  EXPECT_THROW(rotary_embedding(randn({1, 2, 3, 5})), Error);  // odd head dim
  EXPECT_THROW(rotary_embedding(randn({2, 3, 4})), Error);
  EXPECT_THROW(rotary_embedding(randn({1, 1, 2, 4}), -1), Error);
}

TEST(Dropout, SameMaskWhateverTheThreadCount) {
  Tensor x = randn({300, 401});  // above the parallel grain
  Generator g1(7), g2(7);
  const int threads_before = get_num_threads();
  set_num_threads(1);
  Tensor a = dropout(x, 0.3, true, &g1);
  set_num_threads(2);
  Tensor b = dropout(x, 0.3, true, &g2);
  set_num_threads(threads_before);
  EXPECT_TRUE(all_close(a, b, 0, 0));
  EXPECT_EQ(g1.state().offset, g2.state().offset);
  // The next draw from the same generator gives another mask.
  EXPECT_FALSE(all_close(dropout(x, 0.3, true, &g1), a, 0, 0));
}

TEST(Dropout, MaskIsThePhiloxFormula) {
  Tensor x = ones({1001}, DType::f64);
  Generator gen(42);
  const PhiloxState s = gen.state();
  const auto out = dropout(x, 0.4, true, &gen).to_vector<double>();
  for (size_t i = 0; i < out.size(); ++i) {
    const bool keep = double(uint_to_unit_float(philox_block(s, i / 4)[i % 4])) > 0.4;
    ASSERT_EQ(out[i], keep ? 1.0 / 0.6 : 0.0) << "element " << i;
  }
  EXPECT_EQ(gen.state().offset, s.offset + 251);
}

TEST(Dropout, KeepRateAndScaling) {
  Tensor x = randn({200000});
  const double p = 0.3;
  Tensor y = dropout(x, p);
  const auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
  size_t kept = 0;
  for (size_t i = 0; i < xv.size(); ++i)
    if (yv[i] != 0.0f) {
      ++kept;
      ASSERT_NEAR(yv[i], xv[i] / (1 - p), 1e-6 * std::fabs(xv[i]) + 1e-7);
    }
  EXPECT_NEAR(double(kept) / double(xv.size()), 1 - p, 0.01);
}

TEST(Dropout, GradientIsTheMaskOverKeepProbability) {
  Tensor x = randn({3, 1000}, DType::f64).requires_grad_();
  const double p = 0.25;
  Tensor y = dropout(x, p);
  sum(y).backward();
  const auto yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) ASSERT_EQ(gv[i], yv[i] != 0.0 ? 1 / (1 - p) : 0.0) << "element " << i;
  // And through a chain, the upstream gradient is masked the same way.
  Tensor z = leaf({4, 6});
  Generator gen(3);
  EXPECT_TRUE(grads_ok(
      [&gen](const Ts& v) {
        Generator g = gen;  // the same mask on every evaluation
        return dropout(v[0] * 2.0, 0.5, true, &g);
      },
      {z}));
}

TEST(Dropout, EvalModeAndEdgeRates) {
  Tensor x = randn({10, 10}).requires_grad_();
  EXPECT_TRUE(dropout(x, 0.5, false).is_same(x));
  EXPECT_TRUE(dropout(x, 0.0).is_same(x));
  Tensor all = dropout(x, 1.0);
  EXPECT_EQ(abs(all).sum().item(), 0.0);
  sum(all).backward();
  EXPECT_EQ(abs(x.grad()).sum().item(), 0.0);
  EXPECT_THROW(dropout(x, -0.1), Error);
  EXPECT_THROW(dropout(x, 1.5), Error);
  EXPECT_THROW(dropout(x, NAN), Error);
}

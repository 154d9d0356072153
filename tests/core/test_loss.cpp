// cross_entropy, mse_loss, l1_loss: forward against naive double loops,
// gradcheck, ignore_index, label smoothing, reductions, bf16, errors.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;
using Vec = std::vector<double>;

namespace {

// PyTorch's cross_entropy with class dim last: per-row losses (0 where
// ignored), then reduced; mean divides by the number of non-ignored rows.
Vec naive_cross_entropy_rows(const Tensor& logits, const Tensor& target, int64_t ignore, double eps) {
  const Vec x = logits.to_vector<double>();
  const Vec t = target.to(DType::f64).to_vector<double>();
  const int64_t C = logits.size(-1);
  Vec out(t.size(), 0.0);
  for (size_t r = 0; r < t.size(); ++r) {
    if (int64_t(t[r]) == ignore) continue;
    const double* row = x.data() + r * size_t(C);
    double m = -INFINITY, z = 0, sx = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, row[c]);
    for (int64_t c = 0; c < C; ++c) z += std::exp(row[c] - m), sx += row[c];
    const double lse = m + std::log(z);
    out[r] = (1 - eps) * (lse - row[size_t(t[r])]) + eps * (lse - sx / double(C));
  }
  return out;
}

Vec naive_cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore, double eps,
                        const std::string& reduction) {
  Vec rows = naive_cross_entropy_rows(logits, target, ignore, eps);
  if (reduction == "none") return rows;
  double total = 0, count = 0;
  const Vec t = target.to(DType::f64).to_vector<double>();
  for (size_t r = 0; r < rows.size(); ++r) total += rows[r], count += int64_t(t[r]) != ignore;
  return {reduction == "sum" ? total : total / count};
}

// Targets in [0, C) with about a quarter set to `ignore`.
Tensor targets(const Shape& shape, int64_t C, int64_t ignore, DType t = DType::i64) {
  Tensor tg = randint(0, C, shape);
  Tensor drop = lt(rand(shape), scalar_tensor(0.25));
  return where(drop, full(shape, double(ignore), DType::i64), tg).to(t);
}

}  // namespace

// ---- cross_entropy

TEST(CrossEntropy, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64})
    for (DType tt : {DType::i64, DType::i32})
      for (double eps : {0.0, 0.1})
        for (const char* red : {"mean", "sum", "none"}) {
          Tensor logits = randn({9, 13}, t) * 3.0;
          Tensor target = targets({9}, 13, -100, tt);
          Tensor loss = cross_entropy(logits, target, -100, eps, red);
          EXPECT_EQ(loss.dtype(), t);
          EXPECT_EQ(loss.shape(), std::string(red) == "none" ? Shape{9} : Shape{});
          const double tol = t == DType::f64 ? 1e-12 : 1e-5;
          EXPECT_TRUE(all_close(loss, naive_cross_entropy(logits, target, -100, eps, red), tol, tol))
              << name(t) << " " << name(tt) << " eps " << eps << " " << red;
        }
  // Batch dims before the class dim.
  Tensor logits = randn({2, 5, 7}, DType::f64);
  Tensor target = targets({2, 5}, 7, -100);
  EXPECT_EQ(cross_entropy(logits, target, -100, 0.0, "none").shape(), Shape({2, 5}));
  EXPECT_TRUE(all_close(cross_entropy(logits, target), naive_cross_entropy(logits, target, -100, 0, "mean"), 1e-12,
                        1e-12));
  // Unbatched: logits [C], target a scalar.
  Tensor one = randn({6}, DType::f64);
  Tensor t0 = scalar_tensor(4, DType::i64);
  EXPECT_TRUE(all_close(cross_entropy(one, t0), naive_cross_entropy(one, t0, -100, 0, "mean"), 1e-12, 1e-12));
}

TEST(CrossEntropy, LongRowsWithALateMaximum) {
  // A vocabulary longer than the CPU kernel's chunk (16384), with the row
  // maximum in the last chunk: the running sum must be rescaled.
  Tensor logits = randn({4, 20000}) * 2.0;
  logits.narrow(1, 19990, 1).fill_(30.0);
  Tensor target = tensor(std::vector<int64_t>{19990, 0, 16384, 19999});
  for (double eps : {0.0, 0.2})
    EXPECT_TRUE(all_close(cross_entropy(logits, target, -100, eps, "none"),
                          naive_cross_entropy_rows(logits, target, -100, eps), 1e-5, 1e-5));
}

TEST(CrossEntropy, IgnoreIndex) {
  Tensor logits = randn({6, 4}, DType::f64);
  // ignore_index may be a valid class.
  Tensor target = tensor(std::vector<int64_t>{0, 1, 0, 3, 2, 0});
  Tensor rows = cross_entropy(logits, target, 0, 0.0, "none");
  const Vec r = rows.to_vector<double>();
  EXPECT_EQ(r[0], 0.0);
  EXPECT_EQ(r[2], 0.0);
  EXPECT_TRUE(all_close(cross_entropy(logits, target, 0), naive_cross_entropy(logits, target, 0, 0, "mean"), 1e-12,
                        1e-12));
  // All ignored: mean is NaN (0 / 0, as PyTorch), sum is 0, gradients are 0.
  Tensor all = full({6}, -100, DType::i64);
  Tensor x = randn({6, 4}).requires_grad_(true);
  Tensor mean_loss = cross_entropy(x, all);
  EXPECT_TRUE(std::isnan(mean_loss.item()));
  EXPECT_EQ(cross_entropy(x, all, -100, 0.0, "sum").item(), 0.0);
  mean_loss.backward();
  EXPECT_TRUE(all_close(x.grad(), Vec(24, 0.0), 0, 0));
}

TEST(CrossEntropy, Gradcheck) {
  for (double eps : {0.0, 0.3})
    for (const char* red : {"mean", "sum", "none"}) {
      Tensor target = tensor(std::vector<int64_t>{2, -100, 0, 4, 1});
      EXPECT_TRUE(grads_ok([&](const Ts& v) { return cross_entropy(v[0], target, -100, eps, red); }, {leaf({5, 5})}))
          << "eps " << eps << " " << red;
    }
  Tensor t3 = tensor(std::vector<int32_t>{1, 0, 2, 5, 5, 3}, {2, 3});
  EXPECT_TRUE(grads_ok([&](const Ts& v) { return cross_entropy(v[0], t3, 5, 0.1); }, {leaf({2, 3, 4}, 2.0)}));
  // Composed: the logits come from a matmul, the loss is scaled.
  Tensor t4 = tensor(std::vector<int64_t>{0, 2, 1});
  EXPECT_TRUE(grads_ok([&](const Ts& v) { return cross_entropy(matmul(v[0], v[1]), t4) * 3.0; },
                       {leaf({3, 4}), leaf({4, 3})}));
}

TEST(CrossEntropy, GradientIsSoftmaxMinusOneHot) {
  Tensor x = randn({3, 17000}).requires_grad_(true);  // spans two chunks of the CPU kernel
  Tensor target = tensor(std::vector<int64_t>{5, 16999, 16384});
  cross_entropy(x, target, -100, 0.0, "sum").backward();
  Vec expected = softmax(x.detach().to(DType::f64), 1).to_vector<double>();
  for (int r = 0; r < 3; ++r) expected[size_t(r * 17000 + target.to_vector<double>()[size_t(r)])] -= 1;
  EXPECT_TRUE(all_close(x.grad(), expected, 1e-4, 1e-7));
}

TEST(CrossEntropy, Bf16MatchesF32) {
  Tensor logits = (randn({16, 1000}) * 2.0).to(DType::bf16);
  Tensor target = targets({16}, 1000, -100);
  Tensor loss = cross_entropy(logits, target, -100, 0.1);
  EXPECT_EQ(loss.dtype(), DType::bf16);
  // Same inputs: the only difference is the final rounding to bf16 (half an ulp = 2^-9 relative).
  const double ref = cross_entropy(logits.to(DType::f32), target, -100, 0.1).item();
  EXPECT_NEAR(loss.item(), ref, 4e-3 * ref);
  Tensor x = logits.detach().requires_grad_(true);
  cross_entropy(x, target).backward();
  Tensor xf = logits.to(DType::f32).requires_grad_(true);
  cross_entropy(xf, target).backward();
  EXPECT_EQ(x.grad().dtype(), DType::bf16);
  EXPECT_TRUE(all_close(x.grad().to(DType::f32), xf.grad(), 2e-2, 1e-5));
}

TEST(CrossEntropy, Errors) {
  Tensor logits = randn({3, 5});
  expect_error([&] { cross_entropy(logits, tensor(std::vector<int64_t>{0, 5, 1})); },
               "cross_entropy: target 5 at position 1 is out of range [0, 5)");
  expect_error([&] { cross_entropy(logits, tensor(std::vector<int32_t>{0, 1, -1})); }, "target -1");
  expect_error([&] { cross_entropy(logits, tensor(std::vector<int64_t>{0, 1})); },
               "cross_entropy: logits [3,5] need target [3], got [2]");
  expect_error([&] { cross_entropy(logits, zeros({3})); }, "target must be int32 or int64, got float32");
  expect_error([&] { cross_entropy(logits, zeros({3}, DType::i64), -100, 0.0, "avg"); }, "reduction");
  expect_error([&] { cross_entropy(logits, zeros({3}, DType::i64), -100, 1.5); }, "label_smoothing");
  expect_error([&] { cross_entropy(zeros({3, 0}), zeros({3}, DType::i64)); }, "non-empty class dim");
}

// ---- mse_loss and l1_loss

TEST(PointwiseLoss, ForwardMatchesNaive) {
  for (DType t : {DType::f32, DType::f64}) {
    Tensor a = randn({4, 6}, t), b = randn({4, 6}, t);
    const Vec av = a.to_vector<double>(), bv = b.to_vector<double>();
    Vec sq, ab;
    double sq_sum = 0, ab_sum = 0;
    for (size_t i = 0; i < av.size(); ++i) {
      sq.push_back((av[i] - bv[i]) * (av[i] - bv[i]));
      ab.push_back(std::fabs(av[i] - bv[i]));
      sq_sum += sq.back();
      ab_sum += ab.back();
    }
    const double tol = t == DType::f64 ? 1e-12 : 1e-5;
    EXPECT_TRUE(all_close(mse_loss(a, b), {sq_sum / 24}, tol, tol));
    EXPECT_TRUE(all_close(mse_loss(a, b, "sum"), {sq_sum}, tol, tol));
    EXPECT_TRUE(all_close(mse_loss(a, b, "none"), sq, tol, tol));
    EXPECT_TRUE(all_close(l1_loss(a, b), {ab_sum / 24}, tol, tol));
    EXPECT_TRUE(all_close(l1_loss(a, b, "sum"), {ab_sum}, tol, tol));
    EXPECT_TRUE(all_close(l1_loss(a, b, "none"), ab, tol, tol));
    EXPECT_EQ(mse_loss(a, b, "none").shape(), a.shape());
  }
}

TEST(PointwiseLoss, Gradcheck) {
  for (const char* red : {"mean", "sum", "none"}) {
    EXPECT_TRUE(grads_ok([red](const Ts& v) { return mse_loss(v[0], v[1], red); }, {leaf({3, 4}), leaf({3, 4})}));
    EXPECT_TRUE(grads_ok([red](const Ts& v) { return l1_loss(v[0], v[1], red); }, {leaf({3, 4}), leaf({3, 4})}));
  }
  Tensor target = randn({5}, DType::f64);
  EXPECT_TRUE(grads_ok([target](const Ts& v) { return mse_loss(v[0], target); }, {leaf({5})}));
}

TEST(PointwiseLoss, Errors) {
  expect_error([] { mse_loss(randn({2, 3}), randn({3})); }, "mse_loss: input [2,3] and target [3] differ in shape");
  expect_error([] { l1_loss(randn({2}), randn({3})); }, "l1_loss: input [2] and target [3]");
  expect_error([] { mse_loss(randn({2}), randn({2}), "mean_all"); }, "mse_loss: reduction");
  expect_error([] { l1_loss(zeros({2}, DType::i64), zeros({2}, DType::i64)); }, "floating");
}

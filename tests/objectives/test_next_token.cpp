// next_token_loss and next_token_loss_shifted: equal to fm::cross_entropy of
// the flattened tensors and to naive double loops (ignore_index, loss masks
// of every dtype), gradcheck, errors.
#include "fm/objectives/next_token.h"
#include "helpers.h"

using namespace fm;
using namespace fm::objectives;
using fm::test::all_close;
using fm::test::expect_error;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;
using Vec = std::vector<double>;

namespace {

// -log_softmax(row)[target] for one row of V logits.
double row_nll(const double* row, int64_t V, int64_t target) {
  double m = -INFINITY, z = 0;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, row[v]);
  for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - m);
  return m + std::log(z) - row[target];
}

// Mean over (b, t) with t >= 1, mask[b][t] != 0 and tokens[b][t] != -100 of
// the loss of logits[b][t - 1] predicting tokens[b][t].
double naive_shifted(const Tensor& logits, const Tensor& tokens, const Tensor& mask) {
  const int64_t B = logits.size(0), T = logits.size(1), V = logits.size(2);
  const Vec x = logits.to_vector<double>();
  const Vec tok = tokens.to(DType::f64).to_vector<double>();
  const Vec m = mask.defined() ? mask.to(DType::f64).to_vector<double>() : Vec(size_t(B * T), 1.0);
  double total = 0, count = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 1; t < T; ++t) {
      const size_t i = size_t(b * T + t);
      if (m[i] == 0 || int64_t(tok[i]) == -100) continue;
      total += row_nll(x.data() + size_t(b * T + t - 1) * size_t(V), V, int64_t(tok[i]));
      count += 1;
    }
  return total / count;
}

// Random tokens in [0, V) with about a quarter replaced by `ignore`.
Tensor tokens_with_ignored(const Shape& shape, int64_t V, int64_t ignore, DType t = DType::i64) {
  Tensor tok = randint(0, V, shape);
  return where(lt(rand(shape), scalar_tensor(0.25)), full(shape, double(ignore), DType::i64), tok).to(t);
}

}  // namespace

TEST(NextTokenLoss, EqualsCrossEntropyOfFlattened) {
  manual_seed(1);
  for (DType t : {DType::f32, DType::f64})
    for (DType tt : {DType::i64, DType::i32})
      for (int64_t ignore : {int64_t(-100), int64_t(3)}) {
        Tensor logits = randn({3, 7, 11}, t) * 2.0;
        Tensor targets = tokens_with_ignored({3, 7}, 11, ignore, tt);
        Tensor loss = next_token_loss(logits, targets, ignore);
        EXPECT_EQ(loss.shape(), Shape{});
        Tensor flat = cross_entropy(logits.reshape({21, 11}), targets.reshape({21}), ignore);
        EXPECT_TRUE(all_close(loss, flat, 1e-6, 1e-6)) << name(t) << " " << name(tt) << " ignore " << ignore;
        // And against a naive loop.
        const Vec x = logits.to_vector<double>(), tg = targets.to(DType::f64).to_vector<double>();
        double total = 0, count = 0;
        for (size_t r = 0; r < tg.size(); ++r)
          if (int64_t(tg[r]) != ignore) total += row_nll(x.data() + r * 11, 11, int64_t(tg[r])), count += 1;
        EXPECT_TRUE(all_close(loss, Vec{total / count}, 1e-5, 1e-6));
      }
}

TEST(NextTokenLoss, IgnoredTargetsGetNoGradient) {
  Tensor logits = leaf({2, 4, 5});
  Tensor targets = tensor<int64_t>({1, -100, 4, 0, -100, -100, 2, 3}, {2, 4});
  next_token_loss(logits, targets).backward();
  const Vec g = logits.grad().to_vector<double>();
  for (int64_t r : {1, 4, 5})
    for (int64_t v = 0; v < 5; ++v) EXPECT_EQ(g[size_t(r * 5 + v)], 0.0) << "row " << r;
  double sum = 0;
  for (double x : g) sum += std::fabs(x);
  EXPECT_GT(sum, 0.0);
}

TEST(NextTokenLoss, Gradcheck) {
  Tensor targets = tokens_with_ignored({2, 3}, 5, -100);
  EXPECT_TRUE(grads_ok([&](const Ts& in) { return next_token_loss(in[0], targets); }, {leaf({2, 3, 5})}));
}

TEST(NextTokenLossShifted, MatchesNaiveLoopWithMasks) {
  manual_seed(2);
  for (DType t : {DType::f32, DType::f64})
    for (DType mask_type : {DType::b8, DType::u8, DType::i32, DType::i64}) {
      Tensor logits = randn({3, 9, 13}, t) * 2.0;
      Tensor tokens = randint(0, 13, {3, 9});
      // A caption segment per row: tokens [start, start + len) count.
      Tensor mask = zeros({3, 9}, DType::i64);
      const int64_t starts[3] = {0, 3, 5}, lens[3] = {9, 4, 2};
      for (int b = 0; b < 3; ++b) mask.select(0, b).narrow(0, starts[b], lens[b]).fill_(1);
      ASSERT_EQ(mask.sum().item(), 15.0);
      mask = mask.to(mask_type);
      Tensor loss = next_token_loss_shifted(logits, tokens, mask);
      const double tol = t == DType::f64 ? 1e-12 : 1e-5;
      EXPECT_TRUE(all_close(loss, Vec{naive_shifted(logits, tokens, mask)}, tol, tol))
          << name(t) << " mask " << name(mask_type);
    }
  // No mask: every next token counts (and -100 tokens are skipped).
  Tensor logits = randn({2, 6, 7}, DType::f64);
  Tensor tokens = tokens_with_ignored({2, 6}, 7, -100);
  EXPECT_TRUE(all_close(next_token_loss_shifted(logits, tokens), Vec{naive_shifted(logits, tokens, Tensor())},
                        1e-12, 1e-12));
  // The same as next_token_loss on the aligned slices.
  EXPECT_TRUE(all_close(next_token_loss_shifted(logits, tokens),
                        next_token_loss(logits.slice(1, 0, 5), tokens.slice(1, 1, 6)), 1e-12, 1e-12));
}

TEST(NextTokenLossShifted, MaskedPositionsGetNoGradient) {
  Tensor logits = leaf({1, 5, 4});
  Tensor tokens = tensor<int64_t>({0, 1, 2, 3, 0}, {1, 5});
  Tensor mask = tensor<uint8_t>({1, 0, 1, 1, 0}, {1, 5}).to(DType::b8);  // targets 2 and 3 count
  next_token_loss_shifted(logits, tokens, mask).backward();
  const Vec g = logits.grad().to_vector<double>();
  // Rows 1 and 2 predict the counted tokens; rows 0, 3 (predicts a masked
  // token) and 4 (predicts nothing) get no gradient.
  for (int64_t row = 0; row < 5; ++row) {
    double s = 0;
    for (int64_t v = 0; v < 4; ++v) s += std::fabs(g[size_t(row * 4 + v)]);
    EXPECT_EQ(s > 0, row == 1 || row == 2) << "row " << row;
  }
}

TEST(NextTokenLossShifted, Gradcheck) {
  Tensor tokens = randint(0, 5, {2, 4});
  Tensor mask = tensor<int64_t>({1, 1, 0, 1, 0, 1, 1, 1}, {2, 4});
  EXPECT_TRUE(grads_ok([&](const Ts& in) { return next_token_loss_shifted(in[0], tokens, mask); }, {leaf({2, 4, 5})}));
}

TEST(NextTokenLoss, Errors) {
  Tensor logits = randn({2, 3, 5});
  expect_error([&] { next_token_loss(logits.reshape({6, 5}), randint(0, 5, {6})); }, "[B, T, V]");
  expect_error([&] { next_token_loss(logits, randint(0, 5, {2, 4})); }, "targets");
  expect_error([&] { next_token_loss(logits, randint(0, 5, {2, 3}).to(DType::f32)); }, "int32 or int64");
  expect_error([&] { next_token_loss_shifted(logits, randint(0, 5, {2, 3}), ones({2, 2}, DType::b8)); },
               "loss_mask");
  expect_error([&] { next_token_loss_shifted(logits, randint(0, 5, {2, 3}), ones({2, 3})); }, "bool or integer");
  expect_error([&] { next_token_loss_shifted(randn({2, 1, 5}), randint(0, 5, {2, 1})); }, "T >= 2");
}

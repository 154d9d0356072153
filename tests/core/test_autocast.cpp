// Mixed precision: under AutocastGuard(bf16) matrix products compute in bf16,
// gradients reach f32 master weights as f32, and a GPT trains to the f32
// losses within bf16 tolerance.
#include "fm/autocast.h"
#include "fm/nn/flat.h"
#include "fm/nn/gpt.h"
#include "fm/optim/adamw.h"
#include "helpers.h"

using namespace fm;
using fm::test::all_close;

TEST(Autocast, LinearComputesInBf16AndReturnsF32Gradients) {
  Tensor x = randn({5, 7}).requires_grad_(), w = randn({3, 7}).requires_grad_(), b = randn({3}).requires_grad_();
  Tensor y;
  {
    AutocastGuard ac(DType::bf16);
    y = linear(x, w, b);
  }
  EXPECT_EQ(y.dtype(), DType::bf16);
  // The same as casting by hand: bf16 operands, f32 accumulation, bf16 result.
  EXPECT_TRUE(all_close(y, linear(x.detach().to(DType::bf16), w.detach().to(DType::bf16), b.detach().to(DType::bf16)),
                        0, 0));
  Tensor g = randn({5, 3});
  sum(y.to(DType::f32) * g).backward();
  for (const Tensor* p : {&x, &w, &b}) EXPECT_EQ(p->grad().dtype(), DType::f32);
  // Against f32 gradients: within bf16 rounding of the operands.
  EXPECT_TRUE(all_close(w.grad(), matmul(g.t(), x.detach()), 3e-2, 3e-2));
  EXPECT_TRUE(all_close(x.grad(), matmul(g, w.detach()), 3e-2, 3e-2));
  EXPECT_TRUE(all_close(b.grad(), sum(g, Shape{0}), 1e-2, 1e-2));  // summed in bf16
}

TEST(Autocast, OnlyMatrixProductsChangeDtypeAndTheGuardRestores) {
  Tensor a = randn({4, 4}), b = randn({4, 4});
  {
    AutocastGuard ac(DType::bf16);
    EXPECT_EQ(matmul(a, b).dtype(), DType::bf16);
    EXPECT_EQ((a + b).dtype(), DType::f32);
    EXPECT_EQ(layer_norm(a, {4}, Tensor(), Tensor()).dtype(), DType::f32);
    EXPECT_EQ(matmul(a.to(DType::f64), b.to(DType::f64)).dtype(), DType::f64);  // only f32 is cast
    // The loss stays f32 even from bf16 logits.
    EXPECT_EQ(cross_entropy(matmul(a, b), tensor<int64_t>({0, 1, 2, 3})).dtype(), DType::f32);
    {
      AutocastGuard off(std::nullopt);
      EXPECT_EQ(matmul(a, b).dtype(), DType::f32);
    }
    EXPECT_TRUE(autocast_dtype().has_value());
  }
  EXPECT_FALSE(autocast_dtype().has_value());
  EXPECT_EQ(matmul(a, b).dtype(), DType::f32);
}

TEST(Autocast, ParsesPrecisionNamesAndRejectsOthers) {
  EXPECT_FALSE(parse_precision("f32", "runtime.precision").has_value());
  EXPECT_EQ(*parse_precision("bf16", "runtime.precision"), DType::bf16);
  EXPECT_EQ(*parse_precision("float16", "runtime.precision"), DType::f16);
  EXPECT_NE(test::error_of([] { parse_precision("fp8", "runtime.precision"); }).find("runtime.precision"),
            std::string::npos);
  EXPECT_THROW(AutocastGuard(DType::i32), Error);
}

namespace {

struct TrainedRun {
  std::vector<double> losses;
  std::unique_ptr<nn::GPT> model;  // as trained
};

// `steps` AdamW steps of a small GPT under the given precision.
TrainedRun train(std::optional<DType> precision, int steps) {
  nn::GPTOptions o;
  o.vocab_size = 32;
  o.block_size = 16;
  o.n_layer = 2;
  o.n_head = 2;
  o.d_model = 32;
  Generator init(7);
  auto model = std::make_unique<nn::GPT>(o, &init);
  nn::flatten_parameters(*model);
  optim::AdamWOptions ao;
  ao.lr = 3e-3;
  optim::AdamW opt(*model, ao);
  Generator data(11);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    // Counting sequences from random starts: learnable in a few steps.
    std::vector<int64_t> v;
    for (int64_t start : randint(0, 32, {4}, DType::i64, &data).to_vector<int64_t>())
      for (int64_t t = 0; t < 17; ++t) v.push_back((start + t) % 32);
    Tensor ids = tensor(v, {4, 17});
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(precision);
      loss = cross_entropy(model->forward(ids.narrow(1, 0, 16)).flatten(0, 1), ids.narrow(1, 1, 16).flatten());
    }
    loss.backward();
    opt.step();
    losses.push_back(loss.item());
  }
  return {losses, std::move(model)};
}

}  // namespace

TEST(Autocast, Bf16TrainingFollowsF32WithF32MasterWeights) {
  const std::vector<double> ref = train(std::nullopt, 20).losses;
  const TrainedRun run = train(DType::bf16, 20);
  const std::vector<double>& mixed = run.losses;
  for (const auto& p : run.model->named_parameters()) {
    EXPECT_EQ(p.tensor.dtype(), DType::f32) << p.name;
    EXPECT_EQ(p.tensor.grad().dtype(), DType::f32) << p.name;
  }
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(mixed[i], ref[i], 1e-2 * ref[i]) << "step " << i;
  EXPECT_LT(mixed.back(), mixed.front() - 0.3);  // and it learns
}

// Why f16 training needs a loss scaler: a gradient of 1e-9 is below f16's
// smallest subnormal (6e-8), so an f16 matrix product's backward loses it
// entirely; scaled by 65536 it survives (and unscales to the f32 answer).
TEST(Autocast, F16GradientsUnderflowWithoutScalingAndSurviveWithIt) {
  for (const double scale : {1.0, 65536.0}) {
    manual_seed(5);
    Tensor x = randn({4, 8});
    Tensor w = randn({3, 8}).requires_grad_();
    {
      AutocastGuard ac(DType::f16);
      (sum(linear(x, w)) * (1e-9 * scale)).backward();
    }
    const double norm = std::sqrt(sum(square(w.grad() / scale)).to(DType::f64).item());
    const double expected = 1e-9 * std::sqrt(3.0) * std::sqrt(sum(square(sum(x, Shape{0}))).to(DType::f64).item());
    if (scale == 1.0) EXPECT_EQ(norm, 0.0);
    else EXPECT_NEAR(norm, expected, 1e-2 * expected);
  }
}

// Autograd: gradients of element-wise ops, reductions, views and matmul
// against finite differences; accumulation, hooks, no_grad, detach.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

TEST(Gradcheck, BinaryOpsWithBroadcasting) {
  Tensor a = leaf({3, 4}), b = leaf({4}), c = leaf({3, 1});
  EXPECT_TRUE(grads_ok([](const Ts& x) { return add(x[0], x[1]); }, {a, b}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return sub(x[0], x[1]); }, {a, c}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return mul(x[0], x[1]); }, {a, b}));
  Tensor pos = (abs(randn({4}, DType::f64)) + 0.5).detach().requires_grad_(true);
  EXPECT_TRUE(grads_ok([](const Ts& x) { return div(x[0], x[1]); }, {a, pos}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return pow(x[1], x[0]); }, {leaf({3, 4}, 0.5), pos}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return maximum(x[0], x[1]); }, {a, b}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return minimum(x[0], x[1]); }, {a, c}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return x[0] * 3.0 - 2.0 / (x[1] * x[1] + 1.0); }, {a, b}));
}

TEST(Gradcheck, UnaryOps) {
  Tensor x = leaf({2, 5});
  Tensor pos = (abs(randn({2, 5}, DType::f64)) + 0.2).detach().requires_grad_(true);
  using F = Tensor (*)(const Tensor&);
  for (F f : {F(neg), F(exp), F(tanh), F(sigmoid), F(silu), F(sin), F(cos), F(square)})
    EXPECT_TRUE(grads_ok([f](const Ts& v) { return f(v[0]); }, {x}));
  for (F f : {F(log), F(sqrt), F(rsqrt)}) EXPECT_TRUE(grads_ok([f](const Ts& v) { return f(v[0]); }, {pos}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return relu(v[0]); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return abs(v[0]); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return gelu(v[0]); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return gelu(v[0], "tanh"); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return pow(v[0], 3.0); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return clamp(v[0], -0.5, 0.7); }, {x}));
}

TEST(Forward, UnaryOpsMatchStdMath) {
  Tensor x = randn({64}, DType::f64);
  std::vector<double> v = x.to_vector<double>();
  auto expect = [&](const Tensor& got, double (*ref)(double)) {
    std::vector<double> e;
    for (double a : v) e.push_back(ref(a));
    EXPECT_TRUE(all_close(got, e, 1e-12, 1e-12));
  };
  expect(exp(x), [](double a) { return std::exp(a); });
  expect(tanh(x), [](double a) { return std::tanh(a); });
  expect(sigmoid(x), [](double a) { return 1 / (1 + std::exp(-a)); });
  expect(gelu(x), [](double a) { return 0.5 * a * (1 + std::erf(a / std::sqrt(2.0))); });
  expect(gelu(x, "tanh"), [](double a) {
    return 0.5 * a * (1 + std::tanh(std::sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
  });
  expect(silu(x), [](double a) { return a / (1 + std::exp(-a)); });
  expect(relu(x), [](double a) { return a > 0 ? a : 0.0; });
  expect(clamp(x, -0.5, 0.5), [](double a) { return std::min(0.5, std::max(-0.5, a)); });
  // Integer inputs to float math compute in f32.
  EXPECT_EQ(exp(tensor(std::vector<int64_t>{0, 1})).dtype(), DType::f32);
  // bf16 values compute in f32 and round once.
  Tensor h = x.to(DType::bf16);
  EXPECT_TRUE(all_close(exp(h), exp(h.to(DType::f32)).to(DType::bf16).to(DType::f32), 0, 0));
}

// f32 GELU and its gradient run a vectorised kernel on contiguous runs:
// within f32 rounding of the f64 reference over the whole range, tails included.
TEST(Forward, GeluF32MatchesF64) {
  Tensor xf = arange(-12.0, 12.0, 0.0007), gf = randn(xf.shape());
  for (const char* approximate : {"none", "tanh"}) {
    EXPECT_TRUE(all_close(gelu(xf, approximate), gelu(xf.to(DType::f64), approximate), 1e-5, 1e-6)) << approximate;
    Tensor xr = xf.detach().requires_grad_(true), xd = xf.to(DType::f64).detach().requires_grad_(true);
    gelu(xr, approximate).backward(gf);
    gelu(xd, approximate).backward(gf.to(DType::f64));
    EXPECT_TRUE(all_close(xr.grad(), xd.grad(), 1e-5, 1e-6)) << approximate;
  }
}

TEST(Forward, CompareAndWhere) {
  Tensor a = tensor(std::vector<float>{1, 2, 3}), b = tensor(std::vector<float>{3, 2, 1});
  EXPECT_EQ(lt(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 0}));
  EXPECT_EQ(ge(a, b).to_vector<uint8_t>(), (std::vector<uint8_t>{0, 1, 1}));
  EXPECT_TRUE(all_close(where(gt(a, b), a, b), {3, 2, 3}));
  EXPECT_TRUE(all_close(masked_fill(a, eq(a, b), -1), {1, -1, 3}));
  Tensor x = leaf({2, 3}), y = leaf({3});
  Tensor cond = gt(randn({2, 3}), zeros({}));
  EXPECT_TRUE(grads_ok([cond](const Ts& v) { return where(cond, v[0], v[1]); }, {x, y}));
  EXPECT_TRUE(grads_ok([cond](const Ts& v) { return masked_fill(v[0], cond, 2.0); }, {x}));
  EXPECT_THROW(where(a, a, b), Error);  // condition not bool
}

TEST(Gradcheck, Reductions) {
  Tensor x = leaf({3, 4, 5});
  EXPECT_TRUE(grads_ok([](const Ts& v) { return sum(v[0]); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return sum(v[0], {1}, true); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return mean(v[0], {0, 2}); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return var(v[0], {-1}); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return var(v[0], {0, 1}, 0, true); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return max(v[0], 1).values; }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return amin(v[0], {0, 2}); }, {x}));
}

TEST(Forward, ReductionsMatchNaive) {
  Tensor x = randn({4, 6, 5}, DType::f64);
  std::vector<double> v = x.to_vector<double>();
  std::vector<double> s(4 * 5, 0), m(4 * 5, -1e300), sq(4 * 5, 0);
  std::vector<double> am(4 * 5, 0);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j)
      for (int k = 0; k < 5; ++k) {
        const double a = v[size_t((i * 6 + j) * 5 + k)];
        s[size_t(i * 5 + k)] += a;
        if (a > m[size_t(i * 5 + k)]) {
          m[size_t(i * 5 + k)] = a;
          am[size_t(i * 5 + k)] = j;
        }
      }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 6; ++j)
      for (int k = 0; k < 5; ++k) {
        const double d = v[size_t((i * 6 + j) * 5 + k)] - s[size_t(i * 5 + k)] / 6;
        sq[size_t(i * 5 + k)] += d * d;
      }
  EXPECT_TRUE(all_close(sum(x, {1}), s, 1e-12));
  std::vector<double> mu, va;
  for (size_t i = 0; i < s.size(); ++i) mu.push_back(s[i] / 6), va.push_back(sq[i] / 5);
  EXPECT_TRUE(all_close(mean(x, {1}), mu, 1e-12));
  EXPECT_TRUE(all_close(var(x, {1}), va, 1e-12));
  auto mx = max(x, 1);
  EXPECT_TRUE(all_close(mx.values, m, 0, 0));
  EXPECT_TRUE(all_close(mx.indices, am, 0, 0));
  EXPECT_TRUE(all_close(argmax(x, 1), am, 0, 0));
  EXPECT_EQ(sum(x, {1}, true).shape(), Shape({4, 1, 5}));
  EXPECT_EQ(sum(tensor(std::vector<int32_t>{1, 2})).dtype(), DType::i64);
  // Long rows reduce in parallel blocks; result equals the serial f64 sum.
  Tensor big = randn({300001}, DType::f64);
  double ref = 0;
  for (double a : big.to_vector<double>()) ref += a;
  EXPECT_NEAR(sum(big).item(), ref, 1e-9);
}

TEST(Gradcheck, ViewsAndConversions) {
  Tensor x = leaf({2, 3, 4});
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].permute({2, 0, 1}) * 2.0; }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].transpose(0, 2).reshape({4, 6}); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].slice(2, 1, 4, 2); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].select(1, 2).unsqueeze(0); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].narrow(0, 1, 1).expand({3, 3, 4}); }, {x}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return v[0].flatten().contiguous().clone(); }, {x}));
}

TEST(Gradcheck, Matmul) {
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({3, 4}), leaf({4, 2})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({2, 3, 4}), leaf({4, 5})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({2, 1, 3, 4}), leaf({3, 4, 2})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1].transpose(-1, -2)); }, {leaf({2, 3, 4}), leaf({2, 5, 4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({4}), leaf({4, 3})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({2, 4}), leaf({4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return matmul(v[0], v[1]); }, {leaf({4}), leaf({4})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return linear(v[0], v[1], v[2]); }, {leaf({2, 3, 4}), leaf({5, 4}), leaf({5})}));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return linear(v[0], v[1]); }, {leaf({3, 4}), leaf({5, 4})}));
}

// Naive triple loop for [.., m, k] @ [.., k, n] with equal batch dims.
static std::vector<double> naive_bmm(const Tensor& a, const Tensor& b) {
  Tensor ac = a.contiguous(), bc = b.contiguous();
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1), batch = a.numel() / (m * k);
  std::vector<double> av = ac.to_vector<double>(), bv = bc.to_vector<double>(), out(size_t(batch * m * n), 0);
  for (int64_t z = 0; z < batch; ++z)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (int64_t p = 0; p < k; ++p) s += av[size_t(z * m * k + i * k + p)] * bv[size_t(z * k * n + p * n + j)];
        out[size_t(z * m * n + i * n + j)] = s;
      }
  return out;
}

TEST(Forward, MatmulMatchesNaive) {
  for (DType t : {DType::f32, DType::f64}) {
    Tensor a = randn({3, 17, 33}, t), b = randn({3, 33, 9}, t);
    const double tol = t == DType::f32 ? 1e-4 : 1e-12;
    EXPECT_TRUE(all_close(matmul(a, b), naive_bmm(a, b), tol, tol));
    // Transposed operands go to the GEMM as views.
    Tensor at = randn({3, 33, 17}, t).transpose(1, 2), bt = randn({3, 9, 33}, t).transpose(1, 2);
    EXPECT_TRUE(all_close(matmul(at, bt), naive_bmm(at, bt), tol, tol));
    // Broadcast batch.
    Tensor w = randn({33, 9}, t);
    EXPECT_TRUE(all_close(matmul(a, w), naive_bmm(a, w.unsqueeze(0).expand({3, 33, 9})), tol, tol));
  }
  Tensor h = randn({8, 16}).to(DType::bf16), g = randn({16, 4}).to(DType::bf16);
  EXPECT_TRUE(all_close(matmul(h, g), naive_bmm(h, g), 2e-2, 2e-2));
  Tensor x = randn({5, 7}), w = randn({3, 7}), bias = randn({3});
  EXPECT_TRUE(all_close(linear(x, w, bias), matmul(x, w.t()) + bias, 1e-5, 1e-5));
  EXPECT_THROW(linear(x, randn({3, 6})), Error);
}

TEST(Autograd, AccumulatesAcrossBackwardCalls) {
  Tensor w = ones({3}).requires_grad_(true);
  (w * 2.0).sum().backward();
  (w * 3.0).sum().backward();
  EXPECT_TRUE(all_close(w.grad(), {5, 5, 5}));
  // A tensor used twice gets the sum of both paths.
  Tensor v = tensor(std::vector<float>{1, 2}).requires_grad_(true);
  (v * v + v).sum().backward();
  EXPECT_TRUE(all_close(v.grad(), {3, 5}));
}

TEST(Autograd, NoGradDetachAndErrors) {
  Tensor w = randn({3}).requires_grad_(true);
  {
    NoGradGuard ng;
    EXPECT_FALSE((w * 2.0).requires_grad());
  }
  EXPECT_TRUE((w * 2.0).requires_grad());
  EXPECT_FALSE(w.detach().requires_grad());
  EXPECT_EQ(w.detach().data_ptr(), w.data_ptr());
  EXPECT_THROW(zeros({2}).backward(), Error);
  EXPECT_THROW((w * 2.0).backward(), Error);  // non-scalar without a gradient
  EXPECT_THROW(w.fill_(0), Error);            // in-place on a leaf that needs grad
  EXPECT_THROW(tensor(std::vector<int64_t>{1}).requires_grad_(), Error);
}

TEST(Autograd, PostAccumulateHooksFireOncePerPassWhenFinal) {
  Tensor w = randn({4}).requires_grad_(true);
  std::vector<std::vector<float>> seen;
  w.register_post_accumulate_grad_hook([&](Tensor& p) { seen.push_back(p.grad().to_vector<float>()); });
  // Two paths reach w: the hook must see their sum, once.
  Tensor y = (w * 2.0).sum() + (w * w).sum();
  y.backward();
  ASSERT_EQ(seen.size(), 1u);
  std::vector<float> wv = w.to_vector<float>();
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(seen[0][i], 2 + 2 * wv[i], 1e-5);
}

TEST(Autograd, TrainsALinearRegression) {
  manual_seed(3);
  Tensor X = randn({64, 3}), true_w = tensor(std::vector<float>{1.5f, -2.0f, 0.5f}, {3, 1});
  Tensor Y = matmul(X, true_w) + 0.3;
  Tensor w = zeros({1, 3}).requires_grad_(true), b = zeros({1}).requires_grad_(true);
  for (int step = 0; step < 200; ++step) {
    Tensor loss = mean(square(linear(X, w, b) - Y));
    loss.backward();
    NoGradGuard ng;
    w.copy_(w - w.grad() * 0.1);
    b.copy_(b - b.grad() * 0.1);
    w.grad().zero_();
    b.grad().zero_();
  }
  EXPECT_TRUE(all_close(w, {1.5, -2.0, 0.5}, 1e-3, 1e-3));
  EXPECT_NEAR(b.item(), 0.3, 1e-3);
}

TEST(Gradcheck, DetectsAWrongFormula) {
  // A deliberately wrong backward (2g instead of g) must be caught.
  auto wrong = [](const Ts& v) {
    Tensor out;
    {
      NoGradGuard ng;
      out = v[0] * 1.0;
    }
    return record("wrong", out, {v[0]}, [](const Tensor& g, const Node&) { return Ts{g * 2.0}; });
  };
  std::string report;
  EXPECT_FALSE(gradcheck(wrong, {leaf({3})}, &report));
  EXPECT_NE(report.find("analytic"), std::string::npos);
}

TEST(Allocator, SteadyTrainingStepTakesNothingNewFromTheSystem) {
  Tensor x = randn({32, 16}), y = randn({32, 4});
  Tensor w1 = (randn({64, 16}) * 0.1).detach().requires_grad_(), b1 = zeros({64}).requires_grad_();
  Tensor w2 = (randn({4, 64}) * 0.1).detach().requires_grad_();
  auto step = [&] {
    Tensor loss = mean(square(linear(gelu(linear(x, w1, b1)), w2) - y));
    loss.backward();
    NoGradGuard ng;
    for (Tensor* p : {&w1, &b1, &w2}) {
      p->copy_(*p - p->grad() * 0.01);
      p->grad().zero_();
    }
  };
  step();
  step();
  const uint64_t before = cpu_allocator()->stats().system_allocs;
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(cpu_allocator()->stats().system_allocs, before);
}

TEST(Forward, LeadingDimSumsMatchTheGeneralPath) {
  // Contiguous inputs reduced over leading dims take a column-sum kernel;
  // a transposed view of the same values takes the general path.
  Tensor x = randn({37, 5, 300}, DType::f64);
  Tensor xt = x.permute({2, 1, 0}).contiguous().permute({2, 1, 0});  // same values, not contiguous
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_TRUE(all_close(sum(x, {0}), sum(xt, {0}), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(sum(x, {0, 1}, true), sum(xt, {0, 1}, true), 1e-12, 1e-12));
  EXPECT_TRUE(all_close(mean(x, {0}), mean(xt, {0}), 1e-12, 1e-12));
  Tensor f = randn({4096, 64});
  EXPECT_TRUE(all_close(sum(f, {0}), sum(f.t().contiguous(), {1}), 1e-5, 1e-5));
  EXPECT_TRUE(grads_ok([](const Ts& v) { return sum(v[0], {0}); }, {leaf({6, 7})}));
}

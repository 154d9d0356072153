// Tensor basics: factories, views, conversions, printing, Philox, allocator.
#include <algorithm>
#include <thread>

#include "helpers.h"

using namespace fm;
using fm::test::all_close;

TEST(Tensor, FactoriesAndItem) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), Shape({2, 3}));
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_TRUE(all_close(z, std::vector<double>(6, 0.0)));
  EXPECT_TRUE(all_close(ones({4}, DType::f64), {1, 1, 1, 1}));
  EXPECT_TRUE(all_close(full({2}, 2.5, DType::bf16), {2.5, 2.5}));
  EXPECT_TRUE(all_close(arange(0, 5), {0, 1, 2, 3, 4}));
  EXPECT_TRUE(all_close(arange(1, 2, 0.25), {1, 1.25, 1.5, 1.75}));
  EXPECT_TRUE(all_close(linspace(0, 1, 5), {0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(tensor(std::vector<int64_t>{7}).item<int64_t>(), 7);
  EXPECT_THROW(zeros({2}).item(), Error);
  Tensor t = tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  double raw[3] = {1.5, -2, 3};
  Tensor b = from_buffer(raw, {3}, DType::f64);
  raw[0] = 100;  // a copy: unaffected
  EXPECT_TRUE(all_close(b, {1.5, -2, 3}));
  Tensor blob = from_blob(raw, {3}, DType::f64);
  EXPECT_EQ(blob.to_vector<double>()[0], 100);
}

TEST(Tensor, DTypeConversionsRoundTrip) {
  Tensor x = tensor(std::vector<float>{-2.75f, 0.0f, 1.5f, 1e-3f, 65504.0f, 3.14159f});
  for (DType t : {DType::f64, DType::bf16, DType::f16}) {
    Tensor back = x.to(t).to(DType::f32);
    const double tol = t == DType::bf16 ? 1 / 128.0 : (t == DType::f16 ? 1 / 1024.0 : 1e-7);
    EXPECT_TRUE(all_close(back, x, tol, 1e-6)) << name(t);
  }
  EXPECT_EQ(x.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{-2, 0, 1, 0, 65504, 3}));
  EXPECT_EQ(x.to(DType::b8).to_vector<uint8_t>(), (std::vector<uint8_t>{1, 0, 1, 1, 1, 1}));
  EXPECT_EQ(dtype_from_name("bf16"), DType::bf16);
  EXPECT_THROW(dtype_from_name("float8"), Error);
  EXPECT_EQ(promote(DType::bf16, DType::f16), DType::f32);
  EXPECT_EQ(promote(DType::i32, DType::f16), DType::f16);
  EXPECT_EQ(promote(DType::u8, DType::i64), DType::i64);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = arange(0, 24).reshape({2, 3, 4});
  EXPECT_TRUE(x.is_contiguous());
  Tensor p = x.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), Shape({4, 2, 3}));
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.data_ptr(), x.data_ptr());
  // p[i][j][k] = x[j][k][i]
  std::vector<double> pv = p.to_vector<double>(), expected;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 3; ++k) expected.push_back(j * 12 + k * 4 + i);
  EXPECT_EQ(pv, expected);
  EXPECT_TRUE(all_close(x.transpose(0, 2).contiguous(), x.permute({2, 1, 0}).contiguous()));
  EXPECT_TRUE(all_close(x.narrow(2, 1, 2).select(0, 1), {13, 14, 17, 18, 21, 22}));
  EXPECT_TRUE(all_close(x.slice(2, 0, 4, 2).select(1, 0), {0, 2, 12, 14}));
  EXPECT_TRUE(all_close(x.view({6, -1}).select(0, 5), {20, 21, 22, 23}));
  EXPECT_THROW(p.view({24}), Error);  // needs a copy
  EXPECT_TRUE(all_close(p.reshape({24}).narrow(0, 0, 3), {0, 4, 8}));
  Tensor e = tensor(std::vector<float>{1, 2}).unsqueeze(0).expand({3, 2});
  EXPECT_EQ(e.strides(), Shape({0, 1}));
  EXPECT_TRUE(all_close(e, {1, 2, 1, 2, 1, 2}));
  EXPECT_EQ(x.unsqueeze(1).shape(), Shape({2, 1, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).squeeze(-1).shape(), x.shape());
  EXPECT_EQ(x.flatten(1).shape(), Shape({2, 12}));
  EXPECT_THROW(x.permute({0, 0, 1}), Error);
  EXPECT_THROW(x.narrow(0, 1, 5), Error);
  EXPECT_THROW(x.expand({3, 3, 4}), Error);
  // Writing through a view writes the base.
  x.select(0, 0).fill_(-1);
  EXPECT_EQ(x.to_vector<float>()[11], -1.0f);
  EXPECT_EQ(x.to_vector<float>()[12], 12.0f);
}

TEST(Tensor, CopyBroadcastsAndConverts) {
  Tensor dst = zeros({2, 3}, DType::f64);
  dst.copy_(tensor(std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(all_close(dst, {1, 2, 3, 1, 2, 3}));
  dst.t().copy_(tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, {3, 2}));
  EXPECT_TRUE(all_close(dst, {1, 3, 5, 2, 4, 6}));
}

TEST(Tensor, PrintsLikePyTorch) {
  EXPECT_EQ(tensor(std::vector<float>{1, 2, 3}).str(), "tensor([1., 2., 3.])");
  EXPECT_EQ(tensor(std::vector<float>{0.5f, -2, 3, 4}, {2, 2}).str(),
            "tensor([[ 0.5000, -2.0000],\n        [ 3.0000,  4.0000]])");
  EXPECT_EQ(tensor(std::vector<int64_t>{1, 20}).str(), "tensor([ 1, 20])");
  EXPECT_EQ(scalar_tensor(2.5, DType::f64).str(), "tensor(2.5000, dtype=float64)");
  EXPECT_EQ(tensor(std::vector<float>{1, 2}).to(DType::b8).str(), "tensor([True, True])");
  EXPECT_EQ(tensor(std::vector<float>{1e-5f, 1}).str(), "tensor([1.0000e-05, 1.0000e+00])");
  Tensor big = arange(0, 2000);
  EXPECT_NE(big.str().find("..."), std::string::npos);
}

TEST(Random, PhiloxSameStreamWhateverThreadCount) {
  Generator g1(42), g2(42);
  set_num_threads(1);
  Tensor a = randn({100001}, {}, &g1);
  set_num_threads(2);
  Tensor b = randn({100001}, {}, &g2);
  EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>());
  // The generator advances: a second draw differs, and a restored state repeats it.
  PhiloxState saved = g1.state();
  Tensor c = randn({10}, {}, &g1);
  g1.set_state(saved);
  Tensor d = randn({10}, {}, &g1);
  EXPECT_EQ(c.to_vector<float>(), d.to_vector<float>());
  EXPECT_NE(a.narrow(0, 0, 10).to_vector<float>(), c.to_vector<float>());
}

TEST(Random, MomentsMatchDistributions) {
  Generator g(7);
  for (DType t : {DType::f32, DType::f64}) {
    Tensor n = randn({200000}, t, &g);
    EXPECT_NEAR(mean(n).item(), 0.0, 0.01);
    EXPECT_NEAR(var(n).item(), 1.0, 0.02);
    Tensor u = rand({200000}, t, &g);
    EXPECT_NEAR(mean(u).item(), 0.5, 0.01);
    EXPECT_GE(min(u).item(), 0.0);
    EXPECT_LT(max(u).item(), 1.0);
  }
  Tensor r = randint(-3, 5, {100000}, DType::i64, &g);
  EXPECT_EQ(min(r).item(), -3);
  EXPECT_EQ(max(r).item(), 4);
  EXPECT_NEAR(mean(r.to(DType::f64)).item(), 0.5, 0.05);
}

TEST(Allocator, ReusesFreedBlocks) {
  { Tensor warm = empty({1000, 1000}); }
  const auto before = cpu_allocator()->stats();
  for (int i = 0; i < 10; ++i) {
    Tensor t = empty({1000, 1000});
    Tensor u = empty({1000, 1000});
  }
  const auto after = cpu_allocator()->stats();
  EXPECT_LE(after.system_allocs - before.system_allocs, 1u);
  EXPECT_EQ(after.allocs - before.allocs, 20u);
}

TEST(Errors, NameOpAndShapes) {
  try {
    matmul(zeros({2, 3}), zeros({4, 5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "matmul: [2,3] @ [4,5]: inner dimensions 3 and 4 differ");
  }
  try {
    add(zeros({2, 3}), zeros({4}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("add: shapes [2,3] and [4] do not broadcast"), std::string::npos);
  }
  EXPECT_THROW(zeros({2}).to(Device::cuda(0)), Error);
  EXPECT_THROW(Device::parse("tpu"), Error);
}

// Threads sharing a generator (the default one, a loader's workers) never
// get the same counter blocks: reserve() is one atomic step.
TEST(Random, ConcurrentReservesNeverOverlap) {
  Generator g(42);
  const int threads = 4, per_thread = 20000;
  std::vector<std::vector<uint64_t>> got(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) got[size_t(t)].push_back(g.reserve(3).offset);
    });
  for (auto& t : pool) t.join();
  std::vector<uint64_t> all;
  for (const auto& v : got) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], 3 * i) << "blocks handed out twice or skipped";
  EXPECT_EQ(g.state().offset, uint64_t(3 * threads * per_thread));
  EXPECT_EQ(g.state().seed, 42u);
}

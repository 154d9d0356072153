// Every op of the tensor engine on the GPU against the CPU reference, forward
// and backward, on fresh random inputs: f32 within 1e-5 and bf16 within 1e-2
// (largest difference over the largest reference magnitude). Skips without
// a GPU.
#include <cstdlib>
#include <functional>

#include "fm/cuda/blas.h"
#include "fm/cuda/cuda.h"
#include "fm/kernels/core.h"
#include "fm/kernels/spectral.h"
#include "helpers.h"

using namespace fm;
using fm::test::rel_err;

namespace {

// FM_CUDA_TESTS_ON_CPU=1 runs this file with the CPU standing in for the GPU:
// a check of the harness itself on machines without one.
const bool kSelfCheck = std::getenv("FM_CUDA_TESTS_ON_CPU") != nullptr;
bool have_gpu() { return kSelfCheck || cuda::is_available(); }
const Device kGpu = kSelfCheck ? Device::cpu() : Device::cuda(0);

using Inputs = std::vector<Tensor>;

struct Case {
  std::string name;
  std::function<Inputs()> inputs;              // CPU tensors; floating ones get gradients
  std::function<Tensor(const Inputs&)> f;
  bool backward = true;
  bool half = true;                            // also run with bf16 inputs
};

// gtest prints a case by its name.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Tensor pos(const Shape& s) { return abs(randn(s)) + 0.5; }
Tensor ints(int64_t hi, const Shape& s) { return randint(0, hi, s); }

// Runs c on both devices in dtype t and compares outputs and input gradients.
void check(const Case& c, DType t, double tol, uint64_t seed) {
  manual_seed(seed);
  Inputs cpu = c.inputs(), gpu;
  for (Tensor& x : cpu) {
    if (is_floating(x.dtype())) x = x.to(t).detach().requires_grad_(c.backward);
    gpu.push_back(x.detach().to(kGpu));
    if (is_floating(x.dtype())) gpu.back().requires_grad_(c.backward);
  }
  const Tensor yc = c.f(cpu), yg = c.f(gpu);
  ASSERT_EQ(yg.device(), kGpu) << c.name;
  ASSERT_EQ(yg.dtype(), yc.dtype()) << c.name;
  EXPECT_LT(rel_err(yg, yc), tol) << c.name << " forward, " << name(t);
  if (!c.backward || !is_floating(yc.dtype())) return;
  const Tensor g = randn(yc.shape());
  sum(yc.to(DType::f32) * g).backward();
  sum(yg.to(DType::f32) * g.to(kGpu)).backward();
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (!is_floating(cpu[i].dtype())) continue;
    ASSERT_EQ(gpu[i].grad().defined(), cpu[i].grad().defined()) << c.name << " input " << i;
    if (!cpu[i].grad().defined()) continue;  // an input the op only reads through a mask
    EXPECT_LT(rel_err(gpu[i].grad(), cpu[i].grad()), tol) << c.name << " gradient of input " << i << ", " << name(t);
  }
}

std::vector<Case> cases() {
  std::vector<Case> v;
  auto add_case = [&](std::string name, std::function<Inputs()> in, std::function<Tensor(const Inputs&)> f,
                      bool backward = true, bool half = true) {
    v.push_back({std::move(name), std::move(in), std::move(f), backward, half});
  };
  auto two = [] { return Inputs{randn({3, 4, 5}), randn({4, 1})}; };
  // Element-wise, broadcast and strided.
  add_case("add", two, [](const Inputs& x) { return x[0] + x[1]; });
  add_case("sub", two, [](const Inputs& x) { return x[0] - x[1]; });
  add_case("mul", two, [](const Inputs& x) { return x[0] * x[1]; });
  add_case("div", [] { return Inputs{randn({3, 4, 5}), pos({4, 1})}; }, [](const Inputs& x) { return x[0] / x[1]; });
  add_case("pow", [] { return Inputs{pos({6, 7}), randn({6, 7})}; }, [](const Inputs& x) { return pow(x[0], x[1]); });
  add_case("pow_scalar", [] { return Inputs{pos({6, 7})}; }, [](const Inputs& x) { return pow(x[0], 2.5); });
  add_case("maximum", two, [](const Inputs& x) { return maximum(x[0], x[1]); });
  add_case("minimum", two, [](const Inputs& x) { return minimum(x[0], x[1]); });
  add_case("transposed_add", [] { return Inputs{randn({5, 6}), randn({6, 5})}; },
           [](const Inputs& x) { return x[0].t() + x[1]; });
  using Un = Tensor (*)(const Tensor&);
  const std::pair<const char*, Un> unary[] = {{"neg", neg},   {"exp", exp},         {"tanh", tanh}, {"sigmoid", sigmoid},
                                              {"relu", relu}, {"silu", silu},       {"sin", sin},   {"cos", cos},
                                              {"abs", abs},   {"square", square}};
  for (const auto& [name, fn] : unary)
    add_case(name, [] { return Inputs{randn({7, 33})}; }, [fn](const Inputs& x) { return fn(x[0]); });
  for (const auto& [name, fn] : {std::pair<const char*, Un>{"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}})
    add_case(name, [] { return Inputs{pos({7, 33})}; }, [fn](const Inputs& x) { return fn(x[0]); });
  add_case("gelu", [] { return Inputs{randn({7, 33})}; }, [](const Inputs& x) { return gelu(x[0]); });
  add_case("gelu_tanh", [] { return Inputs{randn({7, 33})}; }, [](const Inputs& x) { return gelu(x[0], "tanh"); });
  add_case("clamp", [] { return Inputs{randn({7, 33})}; }, [](const Inputs& x) { return clamp(x[0], -0.5, 0.7); });
  add_case("where", two, [](const Inputs& x) { return where(gt(x[0], x[1]), x[0], x[1]); });
  add_case("masked_fill", two, [](const Inputs& x) { return masked_fill(x[0], lt(x[1], 0.0 * x[1]), -2.0); });
  add_case("compare", two, [](const Inputs& x) { return ge(x[0], x[1]).to(DType::f32) + eq(x[0], x[0]).to(DType::f32); },
           false);
  // Reductions.
  auto r = [] { return Inputs{randn({6, 5, 300})}; };
  add_case("sum_all", r, [](const Inputs& x) { return sum(x[0]); });
  add_case("sum_dims", r, [](const Inputs& x) { return sum(x[0], {0, 2}); });
  add_case("sum_leading", r, [](const Inputs& x) { return sum(x[0], {0, 1}); });
  add_case("mean_keepdim", r, [](const Inputs& x) { return mean(x[0], {1}, true); });
  add_case("var", r, [](const Inputs& x) { return var(x[0], {2}); });
  add_case("amax", r, [](const Inputs& x) { return amax(x[0], {2}); });
  add_case("amin", r, [](const Inputs& x) { return amin(x[0], {1}); });
  add_case("max_dim", r, [](const Inputs& x) { return max(x[0], 2).values; });
  add_case("argmax", r, [](const Inputs& x) { return argmax(x[0], 2); }, false);
  add_case("argmin", r, [](const Inputs& x) { return argmin(x[0], 0); }, false);
  // Matrix products (TF32 is off for these f32 comparisons).
  add_case("matmul", [] { return Inputs{randn({33, 64}), randn({64, 40})}; },
           [](const Inputs& x) { return matmul(x[0], x[1]); });
  add_case("matmul_batched_broadcast", [] { return Inputs{randn({2, 3, 17, 32}), randn({32, 24})}; },
           [](const Inputs& x) { return matmul(x[0], x[1]); });
  add_case("matmul_transposed", [] { return Inputs{randn({32, 17}), randn({24, 32})}; },
           [](const Inputs& x) { return matmul(x[0].t(), x[1].t()); });
  add_case("matmul_vector", [] { return Inputs{randn({9, 16}), randn({16})}; },
           [](const Inputs& x) { return matmul(x[0], x[1]); });
  // The real DFT: cuFFT against FFmpeg's (Bluestein's for 400 and 7), where
  // libfm was built with FFmpeg's libavutil (a bare GPU machine may lack it).
  if (kernels::rfft.has(DeviceType::cpu)) {
    for (int64_t n : {7, 400, 512})
      add_case("rfft_" + std::to_string(n), [n] { return Inputs{randn({3, 5, n})}; },
               [](const Inputs& x) { return rfft(x[0]); });
    add_case("irfft_400", [] { return Inputs{randn({3, 201, 2})}; }, [](const Inputs& x) { return irfft(x[0], 400); });
    add_case("irfft_7", [] { return Inputs{randn({4, 4, 2})}; }, [](const Inputs& x) { return irfft(x[0], 7); });
  }
  add_case("linear_bias", [] { return Inputs{randn({4, 5, 48}), randn({40, 48}), randn({40})}; },
           [](const Inputs& x) { return fm::linear(x[0], x[1], x[2]); });
  add_case("linear", [] { return Inputs{randn({12, 48}), randn({40, 48})}; },
           [](const Inputs& x) { return fm::linear(x[0], x[1]); });
  // Normalisation.
  auto rows = [] { return Inputs{randn({10, 384}), randn({384}), randn({384})}; };
  add_case("softmax", rows, [](const Inputs& x) { return softmax(x[0], -1); });
  add_case("softmax_dim0", rows, [](const Inputs& x) { return softmax(x[0], 0); });
  add_case("log_softmax", rows, [](const Inputs& x) { return log_softmax(x[0], -1); });
  add_case("layer_norm", rows, [](const Inputs& x) { return layer_norm(x[0], {384}, x[1], x[2]); });
  add_case("layer_norm_plain", rows, [](const Inputs& x) { return layer_norm(x[0], {384}); });
  add_case("rms_norm", rows, [](const Inputs& x) { return rms_norm(x[0], {384}, x[1]); });
  add_case("group_norm", [] { return Inputs{randn({2, 8, 5, 5}), randn({8}), randn({8})}; },
           [](const Inputs& x) { return group_norm(x[0], 4, x[1], x[2]); });
  add_case("normalize", rows, [](const Inputs& x) { return normalize(x[0]); });
  // Indexing.
  add_case("embedding", [] { return Inputs{ints(50, {4, 33}), randn({50, 64})}; },
           [](const Inputs& x) { return embedding(x[0], x[1]); });
  add_case("index_select", [] { return Inputs{randn({5, 30, 3}), ints(30, {44})}; },
           [](const Inputs& x) { return index_select(x[0], 1, x[1]); });
  add_case("gather", [] { return Inputs{randn({6, 20}), ints(20, {6, 9})}; },
           [](const Inputs& x) { return gather(x[0], 1, x[1]); });
  add_case("scatter_add", [] { return Inputs{randn({8, 5}), ints(8, {40, 5}), randn({40, 5})}; },
           [](const Inputs& x) { return scatter_add(x[0], 0, x[1], x[2]); });
  // Shapes.
  add_case("cat_stack", [] { return Inputs{randn({3, 4}), randn({3, 6})}; },
           [](const Inputs& x) { return cat({x[0], x[1]}, 1) * stack({x[0].sum({1}), x[1].sum({1})}, 1).sum({1}, true); });
  add_case("split", [] { return Inputs{randn({10, 6})}; },
           [](const Inputs& x) { return split(x[0], {3, 7}, 0)[1] * 2.0; });
  for (const char* mode : {"constant", "reflect", "replicate"})
    add_case(std::string("pad_") + mode, [] { return Inputs{randn({2, 3, 6, 7})}; },
             [mode](const Inputs& x) { return pad(x[0], {1, 2, 2, 1}, mode, 0.5); });
  // Convolutions, pooling, upsampling.
  add_case("conv1d", [] { return Inputs{randn({2, 4, 19}), randn({6, 2, 3}), randn({6})}; }, [](const Inputs& x) {
    Conv1dArgs a;
    a.stride = 2, a.padding = 2, a.dilation = 2, a.groups = 2;
    return conv1d(x[0], x[1], x[2], a);
  });
  add_case("conv2d", [] { return Inputs{randn({2, 4, 11, 9}), randn({6, 2, 3, 3}), randn({6})}; },
           [](const Inputs& x) {
             Conv2dArgs a;
             a.stride[0] = 2, a.padding[0] = 1, a.padding[1] = 2, a.dilation[1] = 2, a.groups = 2;
             return conv2d(x[0], x[1], x[2], a);
           });
  add_case("conv_transpose1d", [] { return Inputs{randn({2, 4, 7}), randn({4, 3, 3}), randn({3})}; },
           [](const Inputs& x) {
             Conv1dArgs a;
             a.stride = 2, a.padding = 1, a.output_padding = 1;
             return conv_transpose1d(x[0], x[1], x[2], a);
           });
  add_case("conv_transpose2d", [] { return Inputs{randn({2, 4, 5, 6}), randn({4, 2, 3, 3}), randn({4})}; },
           [](const Inputs& x) {
             Conv2dArgs a;
             a.stride[0] = a.stride[1] = 2, a.padding[0] = 1, a.output_padding[1] = 1, a.groups = 2;
             return conv_transpose2d(x[0], x[1], x[2], a);
           });
  add_case("avg_pool2d", [] { return Inputs{randn({2, 3, 9, 8})}; },
           [](const Inputs& x) { return avg_pool2d(x[0], 3, 2, 1); });
  add_case("upsample_nearest", [] { return Inputs{randn({2, 3, 5, 4})}; },
           [](const Inputs& x) { return upsample(x[0], 10, 7, "nearest"); });
  add_case("upsample_bilinear", [] { return Inputs{randn({2, 3, 5, 4})}; },
           [](const Inputs& x) { return upsample(x[0], 9, 11, "bilinear"); });
  // Attention.
  auto heads = [](int64_t tq, int64_t tk, int64_t d) {
    return [=] { return Inputs{randn({2, 3, tq, d}), randn({2, 3, tk, d}), randn({2, 3, tk, d})}; };
  };
  add_case("attention", heads(70, 70, 64),
           [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); });
  add_case("attention_causal", heads(130, 130, 64),
           [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); });
  add_case("attention_causal_tq_lt_tk", heads(20, 90, 32),
           [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); });
  // bf16 with head dims 64 and 128 and no mask takes the tensor-core kernels.
  add_case("attention_causal_d128_tq_gt_tk", heads(100, 77, 128),
           [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); });
  add_case("attention_qkvpacked_d64", [] { return Inputs{randn({2, 70, 3 * 2 * 64})}; },
           [](const Inputs& x) { return scaled_dot_product_attention_qkvpacked(x[0], 2, Tensor(), true); });
  add_case("attention_d80", heads(40, 50, 80),
           [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); });
  add_case("attention_bool_mask", [] {
    return Inputs{randn({2, 3, 30, 16}), randn({2, 3, 40, 16}), randn({2, 3, 40, 16}), ints(4, {2, 1, 30, 40})};
  }, [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], gt(x[3], 0.0 * x[3])); });
  // Key ranges (a mixed-modal layout): a bidirectional block of 40 keys, then causal rows seeing keys from 40 on.
  add_case("attention_key_ranges", heads(90, 90, 32), [](const Inputs& x) {
    std::vector<int32_t> r;
    for (int32_t i = 0; i < 90; ++i) r.push_back(i < 40 ? 0 : 40), r.push_back(i < 40 ? 40 : i + 1);
    return scaled_dot_product_attention(x[0], x[1], x[2], tensor(r, {1, 1, 90, 2}).to(x[0].device()));
  });
  add_case("attention_additive_mask", [] {
    return Inputs{randn({2, 3, 30, 16}), randn({2, 3, 40, 16}), randn({2, 3, 40, 16}), randn({30, 40})};
  }, [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2], x[3]); });
  add_case("attention_qkvpacked", [] { return Inputs{randn({2, 65, 3 * 4 * 32})}; },
           [](const Inputs& x) { return scaled_dot_product_attention_qkvpacked(x[0], 4, Tensor(), true); });
  add_case("rotary", [] { return Inputs{randn({2, 3, 17, 32})}; },
           [](const Inputs& x) { return rotary_embedding(x[0], 3); });
  // Losses.
  add_case("cross_entropy", [] { return Inputs{randn({12, 300}), ints(300, {12})}; },
           [](const Inputs& x) { return cross_entropy(x[0], x[1]); });
  add_case("cross_entropy_ignore_smooth", [] {
    Tensor t = ints(300, {12});
    t.narrow(0, 3, 2).fill_(-100.0);
    return Inputs{randn({12, 300}), t};
  }, [](const Inputs& x) { return cross_entropy(x[0], x[1], -100, 0.1); });
  add_case("cross_entropy_gpt2_vocab", [] { return Inputs{randn({8, 50304}) * 3.0, ints(50304, {8})}; },
           [](const Inputs& x) { return cross_entropy(x[0], x[1], -100, 0.0, "none"); });
  add_case("mse_loss", [] { return Inputs{randn({7, 9}), randn({7, 9})}; },
           [](const Inputs& x) { return mse_loss(x[0], x[1]); });
  add_case("l1_loss", [] { return Inputs{randn({7, 9}), randn({7, 9})}; },
           [](const Inputs& x) { return l1_loss(x[0], x[1], "sum"); });
  // Dropout: the same seed gives the same mask on both devices.
  add_case("dropout", [] { return Inputs{randn({37, 41})}; }, [](const Inputs& x) {
    Generator g(5);
    return dropout(x[0], 0.3, true, &g);
  });
  return v;
}

class CudaOps : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    if (!kSelfCheck) cuda::set_allow_tf32(false);
  }
};

TEST_P(CudaOps, F32MatchesTheCpu) { check(GetParam(), DType::f32, 1e-5, 1); }

TEST_P(CudaOps, Bf16MatchesTheCpu) {
  if (!GetParam().half) GTEST_SKIP();
  check(GetParam(), DType::bf16, 1e-2, 2);
}

INSTANTIATE_TEST_SUITE_P(AllOps, CudaOps, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace

TEST(CudaRandom, PhiloxDrawsEqualTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (DType t : {DType::f32, DType::f64}) {
    Generator a(42), b(42);
    EXPECT_EQ(rel_err(rand({1001}, TensorOptions(t).device(kGpu), &a), rand({1001}, t, &b)), 0.0) << name(t);
    EXPECT_LT(rel_err(randn({1001}, TensorOptions(t).device(kGpu), &a), randn({1001}, t, &b)), 1e-6) << name(t);
  }
  Generator a(7), b(7);
  EXPECT_EQ(rel_err(randint(0, 1000, {999}, TensorOptions(DType::i64).device(kGpu), &a),
                    randint(0, 1000, {999}, DType::i64, &b)),
            0.0);
}

TEST(CudaAllocator, ReusesBlocksAcrossSteps) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Tensor w = randn({256, 256}, TensorOptions().device(kGpu)).requires_grad_();
  auto step = [&] {
    Tensor x = randn({64, 256}, TensorOptions().device(kGpu));
    sum(gelu(matmul(x, w))).backward();
    w.grad().zero_();
  };
  step();
  step();
  auto stats = [] { return kSelfCheck ? allocator_for(Device::cpu())->stats() : cuda::memory_stats(); };
  const auto before = stats();
  for (int i = 0; i < 5; ++i) step();
  const auto after = stats();
  EXPECT_EQ(after.system_allocs, before.system_allocs);
  EXPECT_GT(after.allocs, before.allocs);
  EXPECT_GE(after.reserved, after.allocated);
  EXPECT_GE(after.peak_allocated, after.allocated);
}

// The fused cuBLASLt linear epilogues against the same math composed on the
// CPU (bf16 operands, f32 reference; GELU is the tanh approximation).
TEST(CudaBlas, FusedLinearEpiloguesMatchComposedOps) {
  if (kSelfCheck || !cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const int64_t M = 48, K = 64, N = 40;
  const Tensor x = randn({M, K}).to(DType::bf16), w = randn({N, K}).to(DType::bf16), b = randn({N}).to(DType::bf16);
  const Tensor xf = x.to(DType::f32), wf = w.to(DType::f32), bf = b.to(DType::f32);
  const Tensor pre_ref = fm::linear(xf, wf, bf);
  auto gpu_empty = [](const Shape& s) { return empty(s, TensorOptions(DType::bf16).device(kGpu)); };

  Tensor out = gpu_empty({M, N}), pre = gpu_empty({M, N});
  cuda::linear_epilogue(out, x.to(kGpu), w.to(kGpu), b.to(kGpu), cuda::Epilogue::bias);
  EXPECT_LT(rel_err(out, pre_ref), 1e-2);
  cuda::linear_epilogue(out, x.to(kGpu), w.to(kGpu), b.to(kGpu), cuda::Epilogue::bias_gelu, pre);
  EXPECT_LT(rel_err(out, gelu(pre_ref, "tanh")), 1e-2);
  EXPECT_LT(rel_err(pre, pre_ref), 1e-2);

  // Backward: dW = dy^T x and db = column sums of dy; through the GELU,
  // dpre = (dy2 @ W2) * gelu'(pre) for a following layer W2 [N2, N].
  const Tensor dy = randn({M, N}).to(DType::bf16), dyf = dy.to(DType::f32);
  Tensor dw = gpu_empty({N, K}), db = gpu_empty({N});
  cuda::linear_backward_weight(dw, db, dy.to(kGpu), x.to(kGpu));
  EXPECT_LT(rel_err(dw, matmul(dyf.t(), xf)), 1e-2);
  EXPECT_LT(rel_err(db, sum(dyf, Shape{0})), 1e-2);

  const int64_t N2 = 24;
  const Tensor w2 = randn({N2, N}).to(DType::bf16), dy2 = randn({M, N2}).to(DType::bf16);
  const Tensor p = pre_ref.to(DType::bf16).to(DType::f32).requires_grad_();
  const Tensor upstream = matmul(dy2.to(DType::f32), w2.to(DType::f32));
  gelu(p, "tanh").backward(upstream);
  Tensor dpre = gpu_empty({M, N}), dbias = gpu_empty({N});
  cuda::linear_backward_gelu_input(dpre, dbias, dy2.to(kGpu), w2.to(kGpu), pre_ref.to(DType::bf16).to(kGpu));
  EXPECT_LT(rel_err(dpre, p.grad()), 1e-2);
  EXPECT_LT(rel_err(dbias, sum(p.grad(), Shape{0})), 1e-2);
}

// The first product of a shape times cuBLASLt's candidates before it runs: the
// accumulator it is given (beta = 1) must come through once, not once per
// candidate, with autotuning on or off.
TEST(CudaBlas, AutotunedFirstProductAccumulatesOnce) {
  if (kSelfCheck || !cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  for (const bool tune : {true, false}) {
    cuda::set_gemm_autotune(tune);
    const int64_t M = tune ? 136 : 152, N = 88, K = 200;  // shapes no other test uses: fresh plans
    const Tensor a = randn({M, K}), b = randn({K, N}), c = randn({M, N});
    kernels::GemmArgs g;
    g.m = M, g.n = N, g.k = K, g.lda = K, g.ldb = N, g.ldc = N, g.beta = 1.0;
    Tensor c_gpu = c.to(kGpu);
    kernels::gemm(kGpu, g, a.to(kGpu), b.to(kGpu), c_gpu);
    EXPECT_LT(rel_err(c_gpu, c + matmul(a, b)), 1e-5) << "autotune " << tune;
  }
  cuda::set_gemm_autotune(true);
}

// Contiguous, aligned operands take the flat kernels; sizes with a tail and
// views off the alignment (the strided kernels) must agree with the CPU too.
TEST(CudaElementwise, FlatAndStridedPathsMatchTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const int64_t n : {1, 3, 4, 1029, 65536 + 3}) {
    for (const int64_t skip : {0, 1}) {  // a one-element offset breaks the 16-byte alignment
      const Tensor a = randn({n + skip}).slice(0, skip, n + skip), b = randn({n + skip}).slice(0, skip, n + skip);
      const Tensor ga = a.to(kGpu), gb = b.to(kGpu);
      EXPECT_LT(rel_err(ga + gb, a + b), 1e-6) << n << " " << skip;
      EXPECT_LT(rel_err(exp(ga), exp(a)), 1e-6) << n << " " << skip;
      EXPECT_EQ(rel_err(ga.to(DType::bf16), a.to(DType::bf16)), 0.0) << n << " " << skip;
      EXPECT_EQ(rel_err(ga.to(DType::bf16).to(DType::f32), a.to(DType::bf16).to(DType::f32)), 0.0) << n << " " << skip;
      EXPECT_LT(rel_err(ga.to(DType::bf16) * gb.to(DType::bf16), a.to(DType::bf16) * b.to(DType::bf16)), 1e-2);
    }
  }
}

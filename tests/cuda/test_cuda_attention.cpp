// Each CUDA attention path (fm/cuda/attention.h) forced in turn against the
// CPU in f32 on the same bf16 values: output and input gradients, heads given
// apart or split from a packed qkv, causal or not. Forcing a path must run it
// on these shapes (cuDNN's where libfm was built with it, else SIMT), and
// gradients must repeat bit for bit. Skips without a GPU and with the CPU
// standing in for one (FM_CUDA_TESTS_ON_CPU).
#include <cstdlib>
#include <iostream>
#include <string>
#include <utility>

#include "fm/cuda/attention.h"
#include "fm/cuda/cuda.h"
#include "helpers.h"

using namespace fm;
using fm::test::rel_err;

namespace {

const bool kSelfCheck = std::getenv("FM_CUDA_TESTS_ON_CPU") != nullptr;
const Device kGpu = Device::cuda(0);

using Inputs = std::vector<Tensor>;

struct AttentionCase {
  std::string name;
  int64_t B, H, Tq, Tk, D;
  bool causal, packed;
  bool cudnn_sure = true;  // false: cuDNN may refuse, the path that ran is printed
};

void PrintTo(const AttentionCase& c, std::ostream* os) { *os << c.name; }

std::vector<AttentionCase> attention_cases() {
  std::vector<AttentionCase> v;
  for (int64_t D : {64, 128})
    for (int64_t T : {128, 200})
      for (bool causal : {false, true})
        for (bool packed : {false, true}) {
          if (packed && T != 200) continue;  // each case is a cuDNN plan to build: keep them few
          v.push_back({"d" + std::to_string(D) + "_t" + std::to_string(T) + (causal ? "_causal" : "") +
                           (packed ? "_qkvpacked" : ""),
                       2, 3, T, T, D, causal, packed});
        }
  v.push_back({"d64_tq64_tk200_causal", 2, 3, 64, 200, 64, true, false, false});  // cuDNN's bottom-right diagonal
  return v;
}

class CudaAttention : public ::testing::TestWithParam<AttentionCase> {
 protected:
  void SetUp() override {
    if (kSelfCheck || !cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    saved_ = cuda::attention_kernels();
  }
  void TearDown() override {
    if (!saved_.empty()) cuda::set_attention_kernels(saved_);
  }
  std::string saved_;
};

TEST_P(CudaAttention, EveryPathMatchesTheCpu) {
  const AttentionCase& c = GetParam();
  manual_seed(3);
  const int64_t B = c.B, H = c.H, D = c.D;
  Inputs x = c.packed ? Inputs{randn({B, c.Tq, 3 * H * D})}
                      : Inputs{randn({B, H, c.Tq, D}), randn({B, H, c.Tk, D}), randn({B, H, c.Tk, D})};
  for (Tensor& t : x) t = t.to(DType::bf16);
  auto f = [&c](const Inputs& in) {
    return c.packed ? scaled_dot_product_attention_qkvpacked(in[0], c.H, Tensor(), c.causal)
                    : scaled_dot_product_attention(in[0], in[1], in[2], Tensor(), c.causal);
  };
  Inputs ref;
  for (const Tensor& t : x) ref.push_back(t.to(DType::f32).requires_grad_(true));
  const Tensor y_ref = f(ref);
  const Tensor g = randn(y_ref.shape()).to(DType::bf16).to(DType::f32);
  sum(y_ref * g).backward();

  // The path each choice must take on these shapes.
  auto expected = [&c](const std::string& path) -> std::string {
    if (path != "cudnn" && path != "auto") return path;
    if (!cuda::has_cudnn_attention()) return path == "auto" ? "mma" : "simt";
    return c.cudnn_sure ? "cudnn" : "";  // "": either
  };
  // Forward and backward on one path, then on two (the backward reads the
  // other path's lse: their log-sum-exp conventions must agree).
  const std::pair<std::string, std::string> runs[] = {{"cudnn", "cudnn"}, {"mma", "mma"},     {"simt", "simt"},
                                                      {"auto", "auto"},   {"cudnn", "simt"}, {"simt", "cudnn"}};
  for (const auto& [fwd, bwd] : runs) {
    SCOPED_TRACE("forward " + fwd + ", backward " + bwd);
    Inputs gpu;
    for (const Tensor& t : x) gpu.push_back(t.to(kGpu).requires_grad_(true));
    cuda::set_attention_kernels(fwd);
    const Tensor y = f(gpu);
    const std::string fwd_ran = cuda::last_attention_kernel();
    cuda::set_attention_kernels(bwd);
    sum(y.to(DType::f32) * g.to(kGpu)).backward();
    const std::string bwd_ran = cuda::last_attention_kernel();
    EXPECT_LT(rel_err(y, y_ref), 1e-2);
    for (size_t i = 0; i < x.size(); ++i)
      EXPECT_LT(rel_err(gpu[i].grad(), ref[i].grad()), 1e-2) << "gradient of input " << i;
    if (expected(fwd).empty() || expected(bwd).empty())
      std::cout << c.name << ": forward (" << fwd << ") ran " << fwd_ran << ", backward (" << bwd << ") " << bwd_ran
                << "\n";
    if (!expected(fwd).empty()) EXPECT_EQ(fwd_ran, expected(fwd));
    if (!expected(bwd).empty()) EXPECT_EQ(bwd_ran, expected(bwd));
  }

  // cuDNN's gradients repeat bit for bit (libfm's kernels have no atomics).
  cuda::set_attention_kernels("cudnn");
  Inputs first;
  for (int rep = 0; rep < 2; ++rep) {
    Inputs gpu;
    for (const Tensor& t : x) gpu.push_back(t.to(kGpu).requires_grad_(true));
    sum(f(gpu).to(DType::f32) * g.to(kGpu)).backward();
    for (size_t i = 0; i < x.size(); ++i) {
      if (rep == 0) first.push_back(gpu[i].grad().to(Device::cpu()));
      else EXPECT_EQ(rel_err(gpu[i].grad(), first[i]), 0.0) << "gradient of input " << i << " on a second run";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention, ::testing::ValuesIn(attention_cases()),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) { return info.param.name; });

}  // namespace

// The choice by name needs no GPU.
TEST(CudaAttentionChoice, NamesRoundTrip) {
  const std::string saved = cuda::attention_kernels();
  for (const char* which : {"cudnn", "mma", "simt", "auto"}) {
    cuda::set_attention_kernels(which);
    EXPECT_EQ(cuda::attention_kernels(), which);
  }
  EXPECT_THROW(cuda::set_attention_kernels("fastest"), Error);
  cuda::set_attention_kernels(saved);
}

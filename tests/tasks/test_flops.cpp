// The MFU figure's two halves. Its FLOPs: gpt_flops_per_token against the
// matrix products one GPT training step really runs, counted by wrapping the
// CPU's gemm and attention kernels. Its arithmetic: the progress line's MFU
// equals its own throughput times FLOPs per unit over the peak.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "fm/kernels/attention.h"
#include "fm/kernels/core.h"
#include "fm/nn/gpt.h"
#include "fm/objectives/next_token.h"
#include "fm/tasks/lm.h"
#include "fm/train/progress.h"
#include "helpers.h"

using namespace fm;

namespace {

double counted = 0;
decltype(kernels::gemm)::Fn real_gemm = nullptr;
decltype(kernels::attention_forward)::Fn real_attention_forward = nullptr;
decltype(kernels::attention_backward)::Fn real_attention_backward = nullptr;

void counting_gemm(const kernels::GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  counted += 2.0 * double(g.m) * double(g.n) * double(g.k) * double(g.batch);
  real_gemm(g, a, b, c);
}
// Scores and values: 2 products of 2 Tq Tk D each, per batch and head; the
// backward's four products twice that (the count nanoGPT and llm.c use).
double attention_flops(const Tensor& q, const Tensor& k) {
  return 4.0 * double(q.size(0) * q.size(1) * q.size(2) * k.size(2) * q.size(3));
}
void counting_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                      const Tensor& mask, bool causal, double scale) {
  counted += attention_flops(q, k);
  real_attention_forward(out, lse, q, k, v, mask, causal, scale);
}
void counting_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout, const Tensor& q,
                       const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& mask,
                       bool causal, double scale) {
  counted += 2 * attention_flops(q, k);
  real_attention_backward(dq, dk, dv, dout, q, k, v, out, lse, mask, causal, scale);
}

}  // namespace

TEST(Flops, GptFormulaIsTheStepsMatrixProducts) {
  nn::GPTOptions o;
  o.vocab_size = 96;
  o.block_size = 64;
  o.n_layer = 2;
  o.n_head = 4;
  o.d_model = 128;
  Generator init(1);
  nn::GPT model(o, &init);
  const int64_t B = 3, T = 64;
  Tensor ids = randint(0, o.vocab_size, {B, T + 1}, DType::i64);

  real_gemm = kernels::gemm.get(DeviceType::cpu);
  real_attention_forward = kernels::attention_forward.get(DeviceType::cpu);
  real_attention_backward = kernels::attention_backward.get(DeviceType::cpu);
  kernels::gemm.set(DeviceType::cpu, counting_gemm);
  kernels::attention_forward.set(DeviceType::cpu, counting_forward);
  kernels::attention_backward.set(DeviceType::cpu, counting_backward);
  counted = 0;
  objectives::next_token_loss(model.forward(ids.narrow(1, 0, T)), ids.narrow(1, 1, T)).backward();
  kernels::gemm.set(DeviceType::cpu, real_gemm);
  kernels::attention_forward.set(DeviceType::cpu, real_attention_forward);
  kernels::attention_backward.set(DeviceType::cpu, real_attention_backward);

  // Exactly: 6 per weight that enters a matrix product (every 2-D weight but
  // the position table; the tied token table is the LM head) plus attention.
  double matmul_params = 0;
  for (const auto& p : model.named_parameters())
    if (p.tensor.dim() == 2 && p.name != "wpe.weight") matmul_params += double(p.tensor.numel());
  const double exact = double(B * T) * (6 * matmul_params + 12.0 * double(o.n_layer * T * o.d_model));
  EXPECT_NEAR(counted, exact, 1e-9 * exact);
  // The formula counts every parameter (positions, norms, biases too): a few
  // percent high on a model this small, never low.
  const double formula =
      double(B * T) * tasks::gpt_flops_per_token(double(model.num_parameters()), o.n_layer, T, o.d_model);
  EXPECT_GE(formula, counted);
  EXPECT_LT(formula, 1.05 * counted);
}

TEST(Flops, ProgressLineMfuIsThroughputTimesFlopsOverPeak) {
  const double flops_per_token = 3e6, peak_gflops = 50;
  train::Progress progress(100, 0, "tok", flops_per_token, peak_gflops);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::string line = progress.line(10, 2.5, 1e-3, 40000);
  double tok_s = 0, mfu = 0;
  const size_t at = line.find(" tok/s");
  ASSERT_NE(at, std::string::npos) << line;
  ASSERT_EQ(std::sscanf(line.c_str() + line.rfind('|', at) + 1, "%lf", &tok_s), 1) << line;
  ASSERT_EQ(std::sscanf(line.c_str() + line.find("MFU ") + 4, "%lf", &mfu), 1) << line;
  EXPECT_NEAR(tok_s, progress.units_per_s(), 0.5);
  EXPECT_LT(tok_s, 40000 / 0.1 + 1);  // at least 100 ms passed
  EXPECT_NEAR(mfu, 100 * progress.units_per_s() * flops_per_token / (peak_gflops * 1e9), 0.05 + 1e-3 * mfu) << line;
}

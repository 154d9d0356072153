// A GPT trained on the GPU follows the CPU run: f32 losses within 1e-4 and
// bf16 mixed-precision losses within bf16 tolerance, over 30 steps on a
// learnable pattern, and all three learn it (a broken backward cannot hide
// behind a loss that could not fall anyway).
#include <cstdlib>

#include "fm/autocast.h"
#include "fm/cuda/blas.h"
#include "fm/cuda/cuda.h"
#include "fm/nn/flat.h"
#include "fm/nn/gpt.h"
#include "fm/objectives/next_token.h"
#include "fm/optim/adamw.h"
#include "fm/optim/clip.h"
#include "fm/optim/ema.h"
#include "fm/optim/sgd.h"
#include "helpers.h"

using namespace fm;

namespace {

// FM_CUDA_TESTS_ON_CPU=1: the CPU stands in for the GPU (a harness check).
const bool kSelfCheck = std::getenv("FM_CUDA_TESTS_ON_CPU") != nullptr;
bool have_gpu() { return kSelfCheck || cuda::is_available(); }
const Device kGpu = kSelfCheck ? Device::cpu() : Device::cuda(0);

// Arithmetic sequences mod V (a random start and a stride from {1, 2, 3, 5}
// per row): after two tokens, every next one is determined.
Tensor pattern_batch(int64_t B, int64_t T, int64_t V, Generator& g) {
  const std::vector<int64_t> start = randint(0, V, {B}, DType::i64, &g).to_vector<int64_t>();
  const std::vector<int64_t> pick = randint(0, 4, {B}, DType::i64, &g).to_vector<int64_t>();
  const int64_t strides[4] = {1, 2, 3, 5};
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < T; ++j) ids.push_back((start[size_t(b)] + j * strides[pick[size_t(b)]]) % V);
  return tensor(ids, {B, T});
}

// Losses of 30 AdamW steps (clipped, GPT-2 init, dropout off) on `device`.
std::vector<double> losses(Device device, std::optional<DType> precision) {
  nn::GPTOptions o;
  o.vocab_size = 96;
  o.block_size = 64;
  o.n_layer = 2;
  o.n_head = 4;
  o.d_model = 128;
  Generator init(3);
  nn::GPT model(o, &init);
  model.to(device);
  nn::flatten_parameters(model);
  optim::AdamWOptions ao;
  ao.lr = 3e-3;
  optim::AdamW opt(model, ao);
  Generator data(9);
  std::vector<double> out;
  for (int s = 0; s < 30; ++s) {
    Tensor ids = pattern_batch(4, 65, o.vocab_size, data).to(device);
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard ac(precision);
      loss = objectives::next_token_loss(model.forward(ids.narrow(1, 0, 64)), ids.narrow(1, 1, 64));
    }
    loss.backward();
    optim::clip_grad_norm(model.parameters(), 1.0);
    opt.step();
    out.push_back(loss.item());
  }
  return out;
}

}  // namespace

TEST(CudaTraining, GptLossesMatchTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!kSelfCheck) cuda::set_allow_tf32(false);
  const std::vector<double> cpu = losses(Device::cpu(), std::nullopt);
  const std::vector<double> gpu = losses(kGpu, std::nullopt);
  const std::vector<double> bf16 = losses(kGpu, DType::bf16);
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_NEAR(gpu[i], cpu[i], 1e-4 * cpu[i]) << "f32 step " << i;
    EXPECT_NEAR(bf16[i], cpu[i], 2e-2 * cpu[i]) << "bf16 step " << i;
  }
  // ln 96 = 4.56 at the start; the pattern is learnt.
  for (const auto* run : {&cpu, &gpu, &bf16}) EXPECT_LT(run->back(), 0.5 * run->front()) << run->back();
}

TEST(CudaTraining, OptimizersAndClippingMatchTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  if (!kSelfCheck) cuda::set_allow_tf32(false);
  for (int which = 0; which < 2; ++which) {
    std::vector<Tensor> final_params[2];
    double norms[2] = {0, 0};
    for (int d = 0; d < 2; ++d) {
      const Device dev = d ? kGpu : Device::cpu();
      manual_seed(4);
      nn::Linear lin({32, 16, true});
      lin.to(dev);
      nn::flatten_parameters(lin);
      std::unique_ptr<optim::Optimizer> opt;
      if (which == 0) opt = std::make_unique<optim::AdamW>(lin, optim::AdamWOptions{1e-2, 0.9, 0.95, 1e-8, 0.1});
      else opt = std::make_unique<optim::SGD>(lin, optim::SGDOptions{1e-2, 0.9, 0.0, 0.01, true});
      optim::EMA ema(lin, 0.9);
      Generator xg(5);
      for (int s = 0; s < 3; ++s) {
        Tensor x = randn({8, 32}, DType::f32, &xg).to(dev);
        opt->zero_grad();
        sum(square(lin.forward(x))).backward();
        norms[d] = optim::clip_grad_norm(lin.parameters(), 0.5);
        opt->step();
        ema.update(lin);
      }
      for (const Tensor& p : lin.parameters()) final_params[d].push_back(p.clone());
      ema.copy_to(lin);  // the shadow weights, compared as well
      for (const Tensor& p : lin.parameters()) final_params[d].push_back(p.clone());
    }
    EXPECT_NEAR(norms[1], norms[0], 1e-5 * norms[0]);
    for (size_t i = 0; i < final_params[0].size(); ++i)
      EXPECT_TRUE(test::all_close(final_params[1][i].to(Device::cpu()), final_params[0][i], 1e-5, 1e-6))
          << (which ? "sgd" : "adamw") << " parameter " << i;
  }
}

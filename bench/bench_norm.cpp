// Fused norm, softmax and cross-entropy at GPT-2-small shapes (f32). The
// bytes counted are what each op must at least read and write, so
// bytes_per_second compares with BM_copy_peer (a plain tensor copy: the
// memory bandwidth ceiling). *_kernels runs the kernel slots alone; the
// others go through the op, and fwd_bwd through autograd (which also stores
// the leaf gradients).
#include <benchmark/benchmark.h>

#include "fm/fm.h"
#include "fm/kernels/norm.h"

namespace {

constexpr int64_t kRows = 4096, kWidth = 768;           // layer_norm: 8 x 512 tokens of width 768
constexpr int64_t kSoftmaxRows = 4096, kSoftmaxN = 1024;  // attention-score-like rows
constexpr int64_t kTokens = 256, kVocab = 50304;          // cross_entropy over the GPT-2 vocabulary
constexpr int64_t F = 4;                                  // sizeof(float)

void setup(benchmark::State& state, int64_t bytes_per_iteration) {
  state.SetBytesProcessed(int64_t(state.iterations()) * bytes_per_iteration);
  state.SetLabel("threads=" + std::to_string(state.range(0)));
}

void BM_copy_peer(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor x = fm::randn({kRows, kWidth});
  for (auto _ : state) benchmark::DoNotOptimize(x.clone().data_ptr());
  setup(state, 2 * kRows * kWidth * F);
}

// x read, y written, weight and bias read, mean and rstd written.
constexpr int64_t kLayerNormFwdBytes = (2 * kRows * kWidth + 2 * kWidth + 2 * kRows) * F;
// dy, x, weight, mean, rstd read; dx, dweight, dbias written.
constexpr int64_t kLayerNormBwdBytes = (3 * kRows * kWidth + 3 * kWidth + 2 * kRows) * F;

void BM_layer_norm_fwd(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor x = fm::randn({kRows, kWidth}), w = fm::randn({kWidth}), b = fm::randn({kWidth});
  for (auto _ : state) benchmark::DoNotOptimize(fm::layer_norm(x, {kWidth}, w, b).data_ptr());
  setup(state, kLayerNormFwdBytes);
}

void BM_layer_norm_bwd_kernels(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor x = fm::randn({kRows, kWidth}), w = fm::randn({kWidth}), dy = fm::randn({kRows, kWidth});
  fm::Tensor mean = fm::randn({kRows}), rstd = fm::rand({kRows});
  fm::Tensor dx = fm::empty({kRows, kWidth}), dw = fm::empty({kWidth}), db = fm::empty({kWidth});
  for (auto _ : state) fm::kernels::layer_norm_backward(fm::Device::cpu(), dx, dw, db, dy, x, mean, rstd, w);
  setup(state, kLayerNormBwdBytes);
}

void BM_layer_norm_fwd_bwd(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor x = fm::randn({kRows, kWidth}).requires_grad_(true);
  fm::Tensor w = fm::randn({kWidth}).requires_grad_(true), b = fm::randn({kWidth}).requires_grad_(true);
  fm::Tensor dy = fm::randn({kRows, kWidth});
  for (auto _ : state) {
    for (fm::Tensor* t : {&x, &w, &b}) t->set_grad(fm::Tensor());
    fm::layer_norm(x, {kWidth}, w, b).backward(dy);
    benchmark::DoNotOptimize(x.grad().data_ptr());
  }
  setup(state, kLayerNormFwdBytes + kLayerNormBwdBytes);
}

void BM_softmax_fwd(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor x = fm::randn({kSoftmaxRows, kSoftmaxN});
  for (auto _ : state) benchmark::DoNotOptimize(fm::softmax(x, -1).data_ptr());
  setup(state, 2 * kSoftmaxRows * kSoftmaxN * F);
}

fm::Tensor make_targets() { return fm::randint(0, kVocab, {kTokens}, fm::DType::i64); }

void BM_cross_entropy_fwd(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor logits = fm::randn({kTokens, kVocab}), target = make_targets();
  for (auto _ : state) benchmark::DoNotOptimize(fm::cross_entropy(logits, target).data_ptr());
  setup(state, kTokens * kVocab * F);
}

// Forward reads the logits; backward reads them again and writes dlogits.
void BM_cross_entropy_fwd_bwd_kernels(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor logits = fm::randn({kTokens, kVocab}), target = make_targets();
  fm::Tensor loss = fm::empty({kTokens}), lse = fm::empty({kTokens}), g = fm::full({kTokens}, 1.0 / kTokens);
  fm::Tensor dlogits = fm::empty({kTokens, kVocab});
  for (auto _ : state) {
    fm::kernels::cross_entropy_forward(fm::Device::cpu(), loss, lse, logits, target, -100, 0.0);
    fm::kernels::cross_entropy_backward(fm::Device::cpu(), dlogits, g, logits, target, lse, -100, 0.0);
  }
  setup(state, 3 * kTokens * kVocab * F);
}

void BM_cross_entropy_fwd_bwd(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor logits = fm::randn({kTokens, kVocab}).requires_grad_(true), target = make_targets();
  for (auto _ : state) {
    logits.set_grad(fm::Tensor());
    fm::cross_entropy(logits, target).backward();
    benchmark::DoNotOptimize(logits.grad().data_ptr());
  }
  setup(state, 3 * kTokens * kVocab * F);
}

void threads(benchmark::internal::Benchmark* b) { b->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond); }

}  // namespace

BENCHMARK(BM_copy_peer)->Apply(threads);
BENCHMARK(BM_layer_norm_fwd)->Apply(threads);
BENCHMARK(BM_layer_norm_bwd_kernels)->Apply(threads);
BENCHMARK(BM_layer_norm_fwd_bwd)->Apply(threads);
BENCHMARK(BM_softmax_fwd)->Apply(threads);
BENCHMARK(BM_cross_entropy_fwd)->Apply(threads);
BENCHMARK(BM_cross_entropy_fwd_bwd_kernels)->Apply(threads);
BENCHMARK(BM_cross_entropy_fwd_bwd)->Apply(threads);
BENCHMARK_MAIN();

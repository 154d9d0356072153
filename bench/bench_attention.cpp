// Causal attention forward + backward at B=8, H=6, D=64: libfm's flash kernel
// beside the same attention composed from libfm ops (full T x T scores,
// softmax from amax/exp/sum, backward through autograd), in the same run.
// Reports time, GFLOP/s (6 B H T^2 D: forward 4, backward 8, halved by the
// causal mask) and peak_MB, the allocator's high-water mark above the inputs.
#include <benchmark/benchmark.h>

#include <cmath>
#include <string>

#include "fm/fm.h"

namespace {

constexpr int64_t kB = 8, kH = 6, kD = 64;

fm::Tensor composed_attention(const fm::Tensor& q, const fm::Tensor& k, const fm::Tensor& v, const fm::Tensor& hidden) {
  fm::Tensor s = fm::masked_fill(fm::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(kD))), hidden, -INFINITY);
  fm::Tensor e = fm::exp(s - fm::amax(s, {-1}, true).detach());
  return fm::matmul(e / fm::sum(e, {-1}, true), v);
}

void run(benchmark::State& state, bool flash) {
  const int64_t T = state.range(0);
  fm::set_num_threads(int(state.range(1)));
  fm::Tensor q = fm::randn({kB, kH, T, kD}).requires_grad_(), k = fm::randn({kB, kH, T, kD}).requires_grad_();
  fm::Tensor v = fm::randn({kB, kH, T, kD}).requires_grad_(), dout = fm::randn({kB, kH, T, kD});
  const fm::Tensor pos = fm::arange(double(T), fm::DType::i64);
  const fm::Tensor hidden = fm::gt(pos.view({1, T}), pos.view({T, 1}));  // key after query

  fm::Allocator* alloc = fm::cpu_allocator();
  size_t peak = 0;
  auto step = [&] {
    const size_t base = alloc->stats().allocated;
    alloc->reset_peak();
    fm::Tensor out = flash ? fm::scaled_dot_product_attention(q, k, v, fm::Tensor(), true)
                           : composed_attention(q, k, v, hidden);
    out.backward(dout);
    peak = std::max(peak, alloc->stats().peak_allocated - base);
    for (const fm::Tensor& x : {q, k, v}) x.set_grad(fm::Tensor());
  };
  step();  // untimed: the allocator's cache fills, as in a steady training step
  for (auto _ : state) step();
  state.counters["peak_MB"] = double(peak) / 1e6;
  state.counters["GFLOPS"] =
      benchmark::Counter(6.0 * double(kB * kH * T * T * kD) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("T=" + std::to_string(T) + " threads=" + std::to_string(state.range(1)));
}

void BM_attention_flash(benchmark::State& state) { run(state, true); }
void BM_attention_composed(benchmark::State& state) { run(state, false); }

void lengths_and_threads(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int64_t T : {256, 1024}) b->Args({T, threads});
  b->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
}

}  // namespace

BENCHMARK(BM_attention_flash)->Apply(lengths_and_threads);
BENCHMARK(BM_attention_composed)->Apply(lengths_and_threads);
BENCHMARK_MAIN();

// Token embedding at GPT-2 shapes: vocab 50304, width 768, 8 x 256 ids.
// Forward (row gather), forward + backward through autograd (which also
// zeroes and stores the dense 50304 x 768 weight gradient), and the
// backward's scatter-add kernel alone beside a plain serial loop.
#include <benchmark/benchmark.h>

#include <vector>

#include "fm/fm.h"
#include "fm/kernels/index.h"

namespace {

constexpr int64_t kVocab = 50304, kWidth = 768, kBatch = 8, kSeq = 256;
constexpr int64_t kTokens = kBatch * kSeq;

fm::Tensor make_ids() { return fm::randint(0, kVocab, {kBatch, kSeq}, fm::DType::i64); }

// Bytes of the rows read and written per pass.
void set_rows_bytes(benchmark::State& state) {
  state.counters["GB/s"] = benchmark::Counter(2.0 * double(kTokens * kWidth * 4) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("threads=" + std::to_string(state.range(0)));
}

void BM_embedding_forward(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor w = fm::randn({kVocab, kWidth}), ids = make_ids();
  for (auto _ : state) benchmark::DoNotOptimize(fm::embedding(ids, w).data_ptr());
  set_rows_bytes(state);
}

void BM_embedding_forward_backward(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor w = fm::randn({kVocab, kWidth}).requires_grad_(true), ids = make_ids();
  fm::Tensor g = fm::randn({kBatch, kSeq, kWidth});
  for (auto _ : state) {
    w.set_grad(fm::Tensor());
    fm::embedding(ids, w).backward(g);
    benchmark::DoNotOptimize(w.grad().data_ptr());
  }
  state.SetLabel("threads=" + std::to_string(state.range(0)));
}

void BM_embedding_backward_kernel(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  fm::Tensor gw = fm::zeros({kVocab, kWidth}), ids = make_ids().reshape({kTokens});
  fm::Tensor g = fm::randn({kTokens, kWidth});
  for (auto _ : state) fm::kernels::index_add(fm::Device::cpu(), gw, 0, ids, g);
  set_rows_bytes(state);
}

// The floor under forward + backward: allocating and zeroing the dense
// weight gradient.
void BM_zero_weight_grad(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(fm::zeros({kVocab, kWidth}).data_ptr());
  state.SetLabel("threads=" + std::to_string(state.range(0)));
}

// The peer: one thread adding rows in order, as the textbook loop.
void BM_serial_loop_backward(benchmark::State& state) {
  fm::Tensor ids_t = make_ids().reshape({kTokens});
  const std::vector<int64_t> ids = ids_t.to_vector<int64_t>();
  const std::vector<float> g = fm::randn({kTokens, kWidth}).to_vector<float>();
  std::vector<float> gw(size_t(kVocab * kWidth), 0.0f);
  for (auto _ : state) {
    for (int64_t i = 0; i < kTokens; ++i) {
      float* row = gw.data() + ids[size_t(i)] * kWidth;
      const float* src = g.data() + i * kWidth;
      for (int64_t k = 0; k < kWidth; ++k) row[k] += src[k];
    }
    benchmark::DoNotOptimize(gw.data());
  }
  state.counters["GB/s"] = benchmark::Counter(2.0 * double(kTokens * kWidth * 4) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("threads=1");
}

BENCHMARK(BM_embedding_forward)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_embedding_backward_kernel)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_serial_loop_backward)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_zero_weight_grad)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_embedding_forward_backward)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();

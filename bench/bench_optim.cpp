// The fused AdamW step over a flattened model of ~10.5M f32 parameters (ten
// Linear(1024, 1024) layers: two runs, weights and biases). Bytes counted per
// element: param, grad, exp_avg, exp_avg_sq read and param, exp_avg,
// exp_avg_sq written, 4 bytes each. BM_copy_peer (a plain copy of a buffer
// that size) is the memory bandwidth ceiling; BM_adamw_separate runs the same
// model unflattened (one kernel call per parameter).
#include <benchmark/benchmark.h>

#include <memory>

#include "fm/fm.h"
#include "fm/nn/flat.h"
#include "fm/nn/layers.h"
#include "fm/optim/adamw.h"

namespace {

constexpr int64_t kLayers = 10, kWidth = 1024;
constexpr int64_t F = 4;  // sizeof(float)

class Stack : public fm::nn::Module {
 public:
  Stack() {
    for (int64_t i = 0; i < kLayers; ++i)
      register_module("fc" + std::to_string(i),
                      std::make_shared<fm::nn::Linear>(fm::nn::LinearOptions{kWidth, kWidth}));
  }
};

void setup(benchmark::State& state, int64_t bytes_per_iteration) {
  state.SetBytesProcessed(int64_t(state.iterations()) * bytes_per_iteration);
  state.SetLabel("threads=" + std::to_string(state.range(0)));
}

void run_adamw(benchmark::State& state, bool flat) {
  fm::set_num_threads(int(state.range(0)));
  Stack model;
  if (flat) fm::nn::flatten_parameters(model);
  {
    fm::NoGradGuard ng;
    for (const fm::Tensor& p : model.parameters()) {
      if (!p.grad().defined()) p.set_grad(fm::zeros(p.shape()));
      fm::Tensor(p.grad()).copy_(fm::randn(p.shape()) * 1e-3);
    }
  }
  fm::optim::AdamW opt(model, {.lr = 1e-4});
  for (auto _ : state) opt.step();
  state.counters["kernel_calls"] = double(opt.last_step_calls());
  setup(state, 7 * F * model.num_parameters());
}

void BM_adamw_flat(benchmark::State& state) { run_adamw(state, true); }
void BM_adamw_separate(benchmark::State& state) { run_adamw(state, false); }

void BM_copy_peer(benchmark::State& state) {
  fm::set_num_threads(int(state.range(0)));
  const int64_t n = kLayers * (kWidth * kWidth + kWidth);
  fm::Tensor src = fm::randn({n}), dst = fm::empty({n});
  for (auto _ : state) dst.copy_(src);
  setup(state, 2 * F * n);
}

void threads(benchmark::internal::Benchmark* b) { b->Arg(1)->Arg(2)->UseRealTime(); }

}  // namespace

BENCHMARK(BM_copy_peer)->Apply(threads);
BENCHMARK(BM_adamw_flat)->Apply(threads);
BENCHMARK(BM_adamw_separate)->Apply(threads);
BENCHMARK_MAIN();

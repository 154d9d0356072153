// conv2d through im2col + GEMM: forward and forward+backward GFLOP/s at
// small-CNN shapes (2 * N * Cout * OH * OW * Cin/groups * KH * KW per pass;
// backward counts two more passes).
#include <benchmark/benchmark.h>

#include "fm/fm.h"

namespace {

struct ConvShape {
  int64_t n, cin, cout, size, kernel, stride;
};
const ConvShape kShapes[] = {{8, 64, 64, 32, 3, 1}, {8, 64, 128, 32, 3, 2}, {8, 3, 64, 64, 3, 1}};

struct Setup {
  fm::Tensor x, w, b;
  fm::Conv2dArgs args;
  double flops;  // of one forward pass
};

Setup setup(benchmark::State& state) {
  const ConvShape s = kShapes[state.range(0)];
  fm::set_num_threads(int(state.range(1)));
  Setup u;
  u.x = fm::randn({s.n, s.cin, s.size, s.size}).requires_grad_(true);
  u.w = fm::randn({s.cout, s.cin, s.kernel, s.kernel}).requires_grad_(true);
  u.b = fm::randn({s.cout}).requires_grad_(true);
  u.args.stride[0] = u.args.stride[1] = s.stride;
  u.args.padding[0] = u.args.padding[1] = s.kernel / 2;
  const double out = double((s.size + 2 * (s.kernel / 2) - s.kernel) / s.stride + 1);
  u.flops = 2.0 * double(s.n * s.cout * s.cin * s.kernel * s.kernel) * out * out;
  state.SetLabel("N" + std::to_string(s.n) + " " + std::to_string(s.cin) + "->" + std::to_string(s.cout) + " " +
                 std::to_string(s.size) + "x" + std::to_string(s.size) + " k" + std::to_string(s.kernel) + " s" +
                 std::to_string(s.stride) + " threads=" + std::to_string(state.range(1)));
  return u;
}

void BM_conv2d_forward(benchmark::State& state) {
  Setup u = setup(state);
  fm::NoGradGuard ng;
  for (auto _ : state) benchmark::DoNotOptimize(fm::conv2d(u.x, u.w, u.b, u.args).data_ptr());
  state.counters["GFLOPS"] = benchmark::Counter(u.flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv2d_forward_backward(benchmark::State& state) {
  Setup u = setup(state);
  for (auto _ : state) {
    fm::sum(fm::conv2d(u.x, u.w, u.b, u.args)).backward();
    benchmark::DoNotOptimize(u.w.grad().data_ptr());
  }
  state.counters["GFLOPS"] = benchmark::Counter(3 * u.flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void shapes_and_threads(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int i = 0; i < int(std::size(kShapes)); ++i) b->Args({i, threads});
  b->Unit(benchmark::kMillisecond)->MinTime(0.5);
}

}  // namespace

BENCHMARK(BM_conv2d_forward)->Apply(shapes_and_threads);
BENCHMARK(BM_conv2d_forward_backward)->Apply(shapes_and_threads);
BENCHMARK_MAIN();

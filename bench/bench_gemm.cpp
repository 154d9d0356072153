// sgemm GFLOP/s at transformer shapes: libfm's matmul beside OpenBLAS and
// plain Eigen measured in the same run. Shapes are M x K x N (x[M,K] @ W[K,N]).
// Run with OPENBLAS_CORETYPE=SkylakeX (Debian's OpenBLAS misdetects some CPUs).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <Eigen/Core>

#include "fm/fm.h"

#ifdef FM_BENCH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

struct GemmShape {
  int64_t m, k, n;
};
const GemmShape kShapes[] = {{2048, 384, 1152}, {2048, 384, 384}, {2048, 1536, 384}, {2048, 384, 1536}, {1024, 1024, 1024}};

void set_flops(benchmark::State& state, const GemmShape& s) {
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * double(s.m * s.n * s.k) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n) + " threads=" +
                 std::to_string(state.range(1)));
}

void BM_libfm(benchmark::State& state) {
  const GemmShape s = kShapes[state.range(0)];
  fm::set_num_threads(int(state.range(1)));
  fm::Tensor a = fm::randn({s.m, s.k}), b = fm::randn({s.k, s.n});
  for (auto _ : state) benchmark::DoNotOptimize(fm::matmul(a, b).data_ptr());
  set_flops(state, s);
}

void BM_eigen(benchmark::State& state) {
  const GemmShape s = kShapes[state.range(0)];
  omp_set_num_threads(int(state.range(1)));
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Mat a = Mat::Random(s.m, s.k), b = Mat::Random(s.k, s.n), c(s.m, s.n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, s);
}

#ifdef FM_BENCH_OPENBLAS
void BM_openblas(benchmark::State& state) {
  const GemmShape s = kShapes[state.range(0)];
  openblas_set_num_threads(int(state.range(1)));
  std::vector<float> a(size_t(s.m * s.k), 0.5f), b(size_t(s.k * s.n), 0.25f), c(size_t(s.m * s.n));
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.m), int(s.n), int(s.k), 1.0f, a.data(), int(s.k),
                b.data(), int(s.n), 0.0f, c.data(), int(s.n));
    benchmark::DoNotOptimize(c.data());
  }
  set_flops(state, s);
}
#endif

void shapes_and_threads(benchmark::internal::Benchmark* b) {
  for (int threads : {1, 2})
    for (int i = 0; i < int(std::size(kShapes)); ++i) b->Args({i, threads});
  b->Unit(benchmark::kMillisecond)->MinTime(0.5);
}

}  // namespace

BENCHMARK(BM_libfm)->Apply(shapes_and_threads);
BENCHMARK(BM_eigen)->Apply(shapes_and_threads);
#ifdef FM_BENCH_OPENBLAS
BENCHMARK(BM_openblas)->Apply(shapes_and_threads);
#endif
BENCHMARK_MAIN();

// bf16 GEMM TFLOP/s on the GPU at GPT-2 124M shapes (forward and backward of
// its linear layers) and a square 8192^3: libfm's gemm slot through
// fm::matmul beside cuBLASLt's fastest of its top 8 heuristic algorithms,
// measured on the same buffers in the same run. Each number is the median of
// several CUDA-event timings of back-to-back launches (host overhead hidden,
// as in training). Prints a table, then one JSON line per shape.
//   bench_gemm_cuda [--samples N] [--iters N] [--m 8192|16384]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fm/fm.h"

#ifdef FM_BENCH_CUDA
#include <cublasLt.h>

#include "fm/cuda/cuda.h"

namespace {

struct Case {
  std::string name;
  int64_t m, n, k;
  bool trans_a, trans_b;  // row-major C[m, n] = op(A) @ op(B), A stored [k, m] when trans_a, B [n, k] when trans_b
};

struct Options {
  int samples = 7, iters = 10;
  std::vector<int64_t> ms = {8192, 16384};
};

void check_lt(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cuBLASLt %s: %s\n", what, cublasLtGetStatusString(st));
    std::exit(1);
  }
}

std::vector<Case> gpt2_cases(const Options& o) {
  struct Layer {
    const char* name;
    int64_t in, out;
  };
  const Layer layers[] = {{"qkv", 768, 2304}, {"attn.proj", 768, 768}, {"fc", 768, 3072}, {"fc.proj", 3072, 768},
                          {"lm_head", 768, 50304}};
  std::vector<Case> cases;
  for (int64_t M : o.ms)
    for (const Layer& l : layers) {
      const std::string tag = std::string(l.name) + " M=" + std::to_string(M);
      cases.push_back({"fwd " + tag, M, l.out, l.in, false, true});   // y = x @ W^T
      cases.push_back({"dx " + tag, M, l.in, l.out, false, false});   // dx = dy @ W
      cases.push_back({"dW " + tag, l.out, l.in, M, true, false});    // dW = dy^T @ x
    }
  cases.push_back({"square 8192", 8192, 8192, 8192, false, false});
  return cases;
}

fm::Tensor random_bf16(const fm::Shape& shape) {
  const auto opt = fm::TensorOptions(fm::DType::bf16).device(fm::Device::cuda());
  try {
    return fm::randn(shape, opt);
  } catch (const fm::Error&) {  // no GPU random kernel: draw on the host
    return fm::randn(shape).to(fm::DType::bf16).to(fm::Device::cuda());
  }
}

// Median over `samples` of the mean time (ms) of `iters` back-to-back calls.
template <class F>
double median_ms(const Options& o, F&& f) {
  for (int i = 0; i < 3; ++i) f();  // warm-up (plan caches, clocks)
  fm::cuda::Event start, stop;
  std::vector<double> t;
  for (int s = 0; s < o.samples; ++s) {
    start.record();
    for (int i = 0; i < o.iters; ++i) f();
    stop.record();
    stop.synchronize();
    t.push_back(double(start.elapsed_ms(stop)) / o.iters);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// cuBLASLt on the same buffers: row-major C = op(A) op(B) as column-major
// C^T = op(B)^T op(A)^T. Returns the best median time over the top 8 algorithms.
double cublaslt_best_ms(const Options& o, const Case& c, const fm::Tensor& A, const fm::Tensor& B, const fm::Tensor& C,
                        const fm::Tensor& workspace) {
  cublasLtHandle_t h = nullptr;
  check_lt(cublasLtCreate(&h), "create");
  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
  const int32_t ta = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, tb = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
  // Stored row-major r x c is column-major c x r with ld = c.
  auto layout = [](const fm::Tensor& t) {
    cublasLtMatrixLayout_t l = nullptr;
    check_lt(cublasLtMatrixLayoutCreate(&l, CUDA_R_16BF, uint64_t(t.size(1)), uint64_t(t.size(0)), t.size(1)),
             "layout");
    return l;
  };
  cublasLtMatrixLayout_t la = layout(B), lb = layout(A), lc = layout(C);
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "pref");
  const uint64_t ws_bytes = workspace.nbytes();
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                sizeof ws_bytes),
           "workspace");
  cublasLtMatmulHeuristicResult_t results[8] = {};
  int found = 0;
  check_lt(cublasLtMatmulAlgoGetHeuristic(h, desc, la, lb, lc, lc, pref, 8, results, &found), "heuristic");
  const float alpha = 1.0f, beta = 0.0f;
  double best = 1e30;
  for (int i = 0; i < found; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    auto run = [&] {
      check_lt(cublasLtMatmul(h, desc, &alpha, B.data_ptr(), la, A.data_ptr(), lb, &beta, C.data_ptr(), lc,
                              C.data_ptr(), lc, &results[i].algo, workspace.data_ptr(), ws_bytes,
                              fm::cuda::current_stream()),
               "matmul");
    };
    best = std::min(best, median_ms(o, run));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  for (auto l : {la, lb, lc}) cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(h);
  return best;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--samples")) o.samples = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--iters")) o.iters = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--m")) o.ms = {std::atoll(argv[i + 1])};
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  if (!fm::cuda::is_available()) {
    std::printf("no CUDA device\n");
    return 0;
  }
  const Options o = parse(argc, argv);
  const auto info = fm::cuda::device_info(0);
  std::printf("%s, bf16 in/out, f32 accumulate; median of %d x %d launches\n", info.name, o.samples, o.iters);
  std::printf("%-28s %8s %8s %8s  %12s %12s %6s\n", "shape", "M", "N", "K", "libfm TF/s", "cuBLASLt TF/s", "ratio");
  const fm::Tensor workspace = fm::empty({32 << 20}, fm::TensorOptions(fm::DType::u8).device(fm::Device::cuda()));
  std::vector<std::string> json;
  for (const Case& c : gpt2_cases(o)) {
    const fm::Tensor A = random_bf16(c.trans_a ? fm::Shape{c.k, c.m} : fm::Shape{c.m, c.k});
    const fm::Tensor B = random_bf16(c.trans_b ? fm::Shape{c.n, c.k} : fm::Shape{c.k, c.n});
    const fm::Tensor C = fm::empty({c.m, c.n}, A.options());
    const fm::Tensor a = c.trans_a ? A.t() : A, b = c.trans_b ? B.t() : B;
    const double flop = 2.0 * double(c.m) * double(c.n) * double(c.k);
    const double ours = median_ms(o, [&] { (void)fm::matmul(a, b); });
    const double theirs = cublaslt_best_ms(o, c, A, B, C, workspace);
    const double tf_ours = flop / ours / 1e9, tf_theirs = flop / theirs / 1e9;
    std::printf("%-28s %8ld %8ld %8ld  %12.1f %12.1f %6.3f\n", c.name.c_str(), long(c.m), long(c.n), long(c.k),
                tf_ours, tf_theirs, tf_ours / tf_theirs);
    char line[512];
    std::snprintf(line, sizeof line,
                  "{\"bench\": \"gemm_cuda\", \"shape\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, "
                  "\"dtype\": \"bf16\", \"libfm_tflops\": %.2f, \"cublaslt_tflops\": %.2f, \"ratio\": %.4f, "
                  "\"device\": \"%s\"}",
                  c.name.c_str(), long(c.m), long(c.n), long(c.k), tf_ours, tf_theirs, tf_ours / tf_theirs,
                  info.name);
    json.emplace_back(line);
  }
  for (const std::string& l : json) std::printf("%s\n", l.c_str());
  return 0;
}

#else

int main() {
  std::printf("no CUDA device (built without libfm::cuda)\n");
  return 0;
}

#endif

// One forward + backward + AdamW step of a GPT: tokens/s, achieved GFLOP/s and
// peak memory, as one JSON line (the same fields as the PyTorch peer
// bench/peers/gpt_step.py, to be run beside it). On a GPU, MFU is taken
// against --peak-tflops (the card's dense bf16 peak; 989 for an H100 SXM).
//
//   bench_gpt [--threads N] [--steps N] [--layers 6] [--d-model 384] [--heads 6]
//             [--seq 256] [--batch 8] [--vocab 65] [--device cpu|cuda]
//             [--precision f32|bf16] [--peak-tflops X] [--profile 1]
// --profile 1 also prints, to stderr, where one step's kernel time goes.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "fm/fm.h"
#include "fm/objectives/next_token.h"
#include "fm/nn/flat.h"
#include "fm/nn/gpt.h"
#include "fm/optim/adamw.h"
#include "fm/profile.h"

#ifdef FM_BENCH_CUDA
#include "fm/cuda/cuda.h"
#endif

int main(int argc, char** argv) {
  int threads = 1, steps = 10;
  fm::nn::GPTOptions o{65, 256, 6, 6, 384};
  int64_t batch = 8;
  std::string device = "cpu", precision = "f32";
  double peak_tflops = 0;
  bool profile = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (k == "--device") device = argv[i + 1];
    else if (k == "--precision") precision = argv[i + 1];
    else if (k == "--profile") profile = v != 0;
    else if (k == "--peak-tflops") peak_tflops = std::atof(argv[i + 1]);
    else if (k == "--threads") threads = int(v);
    else if (k == "--steps") steps = int(v);
    else if (k == "--layers") o.n_layer = v;
    else if (k == "--d-model") o.d_model = v;
    else if (k == "--heads") o.n_head = v;
    else if (k == "--seq") o.block_size = v;
    else if (k == "--batch") batch = v;
    else if (k == "--vocab") o.vocab_size = v;
    else {
      std::fprintf(stderr, "bench_gpt: unknown option %s\n", k.c_str());
      return 1;
    }
  }
  try {
    fm::set_num_threads(threads);
    const fm::Device dev = fm::Device::parse(device);
    const auto autocast = fm::parse_precision(precision, "--precision");
#ifdef FM_BENCH_CUDA
    if (dev.is_cuda() && !fm::cuda::is_available()) {
      std::printf("{\"peer\": \"libfm\", \"skipped\": \"no CUDA device\"}\n");
      return 0;
    }
#endif
    fm::manual_seed(0);
    fm::nn::GPT model(o);
    model.to(dev);
    fm::nn::flatten_parameters(model);
    fm::optim::AdamW opt(model, {3e-4, 0.9, 0.95, 1e-8, 0.1});
    const int64_t T = o.block_size;
    fm::Tensor ids = fm::randint(0, o.vocab_size, {batch, T}).to(dev);
    fm::Tensor targets = fm::randint(0, o.vocab_size, {batch, T}).to(dev);
    // Where a step's time goes: device time of the forward, backward and
    // optimizer (events), and how long the host took to queue the step; a host
    // time near the step time means the step is bound by kernel launches.
    std::vector<double> fwd_ms, bwd_ms, opt_ms, host_ms;
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v.empty() ? 0.0 : v[v.size() / 2];
    };
    auto step = [&] {
#ifdef FM_BENCH_CUDA
      std::optional<fm::cuda::Event> ev[4];
      auto mark = [&](int i) {
        if (dev.is_cuda()) ev[i].emplace().record();
      };
#else
      auto mark = [](int) {};
#endif
      const auto h0 = std::chrono::steady_clock::now();
      mark(0);
      fm::Tensor loss;
      {
        fm::AutocastGuard ac(autocast);
        loss = fm::objectives::next_token_loss(model.forward(ids), targets);
      }
      mark(1);
      opt.zero_grad();
      loss.backward();
      mark(2);
      opt.step();
      mark(3);
      host_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - h0).count());
      loss.item();  // waits for the device
#ifdef FM_BENCH_CUDA
      if (dev.is_cuda()) {
        fwd_ms.push_back(ev[0]->elapsed_ms(*ev[1]));
        bwd_ms.push_back(ev[1]->elapsed_ms(*ev[2]));
        opt_ms.push_back(ev[2]->elapsed_ms(*ev[3]));
      }
#endif
    };
    for (int i = 0; i < 2; ++i) step();  // warm-up: caches filled
    fwd_ms.clear(), bwd_ms.clear(), opt_ms.clear(), host_ms.clear();
    std::vector<double> times;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    const double step_s = median(times);
    const double tokens = double(batch * T);
    // 6 flops per parameter per token (forward + backward) plus attention's
    // score and value products (12 L T d per token), as nanoGPT and llm.c count.
    const double params = double(model.num_parameters());
    const double flops = tokens * (6.0 * params + 12.0 * double(o.n_layer * T * o.d_model));
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = double(ru.ru_maxrss) / 1024.0;
#ifdef FM_BENCH_CUDA
    if (dev.is_cuda()) peak_mb = double(fm::cuda::memory_stats().peak_allocated) / 1048576.0;
#endif
    const double mfu = peak_tflops > 0 ? flops / step_s / (peak_tflops * 1e12) : 0.0;
    std::printf(
        "{\"peer\": \"libfm\", \"tokens_per_s\": %.1f, \"step_s\": %.4f, \"gflops\": %.1f, \"mfu\": %.4f, "
        "\"peak_mem_mb\": %.1f, \"threads\": %d, \"params\": %.0f, \"device\": \"%s\", \"precision\": \"%s\", "
        "\"host_ms\": %.2f, \"fwd_ms\": %.2f, \"bwd_ms\": %.2f, \"opt_ms\": %.2f}\n",
        tokens / step_s, step_s, flops / step_s / 1e9, mfu, peak_mb, threads, params, dev.str().c_str(),
        precision.c_str(), median(host_ms), median(fwd_ms), median(bwd_ms), median(opt_ms));
    if (profile) {
      fm::Profile prof;
      step();
      std::fputs(fm::Profile::table(prof.stop()).c_str(), stderr);
    }
    return 0;
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "bench_gpt: %s\n", e.what());
    return 1;
  }
}

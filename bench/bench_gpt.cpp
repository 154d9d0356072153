// One forward + backward + AdamW step of a GPT on the CPU: tokens/s, achieved
// GFLOP/s and peak resident memory, as one JSON line (the same fields as the
// PyTorch peer bench/peers/gpt_step.py, to be run beside it).
//
//   bench_gpt [--threads N] [--steps N] [--layers 6] [--d-model 384] [--heads 6]
//             [--seq 256] [--batch 8] [--vocab 65]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fm/fm.h"
#include "fm/nn/flat.h"
#include "fm/nn/gpt.h"
#include "fm/optim/adamw.h"

int main(int argc, char** argv) {
  int threads = 1, steps = 10;
  fm::nn::GPTOptions o{65, 256, 6, 6, 384};
  int64_t batch = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (k == "--threads") threads = int(v);
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
    fm::manual_seed(0);
    fm::nn::GPT model(o);
    fm::nn::flatten_parameters(model);
    fm::optim::AdamW opt(model, {3e-4, 0.9, 0.95, 1e-8, 0.1});
    const int64_t T = o.block_size;
    fm::Tensor ids = fm::randint(0, o.vocab_size, {batch, T});
    fm::Tensor targets = fm::randint(0, o.vocab_size, {batch, T});
    auto step = [&] {
      fm::Tensor logits = model.forward(ids);
      fm::Tensor loss = fm::cross_entropy(logits.view({-1, o.vocab_size}), targets.view({-1}));
      opt.zero_grad();
      loss.backward();
      opt.step();
    };
    for (int i = 0; i < 2; ++i) step();  // warm-up: caches filled
    std::vector<double> times;
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double step_s = times[times.size() / 2];
    const double tokens = double(batch * T);
    // 6 flops per parameter per token (forward + backward) plus attention's
    // score and value products (12 L T d per token), as nanoGPT and llm.c count.
    const double params = double(model.num_parameters());
    const double flops = tokens * (6.0 * params + 12.0 * double(o.n_layer * T * o.d_model));
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(
        "{\"peer\": \"libfm\", \"tokens_per_s\": %.1f, \"step_s\": %.4f, \"gflops\": %.1f, \"peak_rss_mb\": %.1f, "
        "\"threads\": %d, \"params\": %.0f}\n",
        tokens / step_s, step_s, flops / step_s / 1e9, double(ru.ru_maxrss) / 1024.0, threads, params);
    return 0;
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "bench_gpt: %s\n", e.what());
    return 1;
  }
}

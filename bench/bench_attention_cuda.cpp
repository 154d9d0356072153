// Causal attention forward + backward on the GPU (bf16, GPT-2 124M heads:
// B=8, H=12, D=64, T=1024 and T=2048 at B=4): libfm's
// scaled_dot_product_attention through autograd, timed with CUDA events
// (median of several runs). One JSON line per shape, the fields of its peer
// bench/peers/attention_step.py (PyTorch's F.scaled_dot_product_attention).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "fm/fm.h"

#ifdef FM_BENCH_CUDA
#include "fm/cuda/cuda.h"

int main() {
  if (!fm::cuda::is_available()) {
    std::printf("no CUDA device\n");
    return 0;
  }
  struct Shape {
    int64_t B, H, T, D;
  };
  const auto info = fm::cuda::device_info(0);
  for (const Shape s : {Shape{8, 12, 1024, 64}, Shape{4, 12, 2048, 64}}) {
    const auto opt = fm::TensorOptions(fm::DType::bf16).device(fm::Device::cuda());
    fm::Tensor q = fm::randn({s.B, s.H, s.T, s.D}, opt).requires_grad_();
    fm::Tensor k = fm::randn({s.B, s.H, s.T, s.D}, opt).requires_grad_();
    fm::Tensor v = fm::randn({s.B, s.H, s.T, s.D}, opt).requires_grad_();
    const fm::Tensor g = fm::randn({s.B, s.H, s.T, s.D}, opt);
    auto fwd = [&] { return fm::scaled_dot_product_attention(q, k, v, fm::Tensor(), true); };
    auto fwd_bwd = [&] {
      fwd().backward(g);
    };
    auto median_ms = [](auto&& f) {
      for (int i = 0; i < 3; ++i) f();
      fm::cuda::Event start, stop;
      std::vector<double> t;
      for (int r = 0; r < 10; ++r) {
        start.record();
        f();
        stop.record();
        stop.synchronize();
        t.push_back(start.elapsed_ms(stop));
      }
      std::sort(t.begin(), t.end());
      return t[t.size() / 2];
    };
    const double f_ms = median_ms([&] {
      fm::NoGradGuard ng;
      (void)fwd();
    });
    const double fb_ms = median_ms(fwd_bwd);
    // Causal: half of the 4 B H T^2 D forward flops; the backward is 2.5x the forward.
    const double fwd_flop = 2.0 * double(s.B * s.H) * double(s.T) * double(s.T) * double(s.D);
    std::printf("{\"peer\": \"libfm\", \"B\": %ld, \"H\": %ld, \"T\": %ld, \"D\": %ld, \"fwd_ms\": %.4f, "
                "\"fwd_bwd_ms\": %.4f, \"fwd_tflops\": %.1f, \"fwd_bwd_tflops\": %.1f, \"device\": \"%s\"}\n",
                long(s.B), long(s.H), long(s.T), long(s.D), f_ms, fb_ms, fwd_flop / f_ms / 1e9,
                3.5 * fwd_flop / fb_ms / 1e9, info.name);
  }
  return 0;
}

#else

int main() {
  std::printf("no CUDA device (built without libfm::cuda)\n");
  return 0;
}

#endif

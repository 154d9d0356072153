// An outside program using an installed libfm: trains a two-layer MLP on a
// regression it generates (y = sin(3x)) and exits non-zero unless it learns.
#include <cstdio>

#include "fm/fm.h"

int main() {
  try {
    fm::manual_seed(0);
    const int64_t n = 256, hidden = 32;
    fm::Tensor x = fm::rand({n, 1}) * 2.0 - 1.0;
    fm::Tensor y = fm::sin(x * 3.0);

    auto param = [](fm::Shape s, double scale) { return (fm::randn(s) * scale).detach().requires_grad_(); };
    fm::Tensor w1 = param({hidden, 1}, 1.0), b1 = param({hidden}, 0.1);
    fm::Tensor w2 = param({1, hidden}, 0.2), b2 = param({1}, 0.0);
    std::vector<fm::Tensor> params{w1, b1, w2, b2};

    float first = 0, last = 0;
    for (int step = 0; step < 1500; ++step) {
      fm::Tensor pred = fm::linear(fm::tanh(fm::linear(x, w1, b1)), w2, b2);
      fm::Tensor loss = fm::mean(fm::square(pred - y));
      loss.backward();
      fm::NoGradGuard no_grad;
      for (auto& p : params) {
        p.copy_(p - p.grad() * 0.2);
        p.grad().zero_();
      }
      last = float(loss.item());
      if (step == 0) first = last;
    }
    std::printf("mlp: loss %.4f -> %.4f\n", first, last);
    return last < 0.01f && last < first / 20 ? 0 : 1;
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

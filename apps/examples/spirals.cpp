// libfm's first demo: an MLP learns to tell apart three interleaved spirals
// that the program generates, using tensors, autograd and fused
// cross-entropy. Prints a progress line and the held-out accuracy.
//
//   build/bin/spirals [--steps N] [--threads N] [--seed N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fm/fm.h"

namespace {

struct Args {
  int steps = 1500;
  int threads = 0;
  uint64_t seed = 1;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) fm::error("missing value after ", k);
      return argv[++i];
    };
    if (k == "--steps") a.steps = std::atoi(value());
    else if (k == "--threads") a.threads = std::atoi(value());
    else if (k == "--seed") a.seed = std::strtoull(value(), nullptr, 10);
    else if (k == "--help" || k == "-h") {
      std::printf("usage: spirals [--steps N] [--threads N] [--seed N]\n");
      std::exit(0);
    } else fm::error("unknown option '", k, "' (try --help)");
  }
  if (a.steps < 1) fm::error("--steps must be at least 1");
  return a;
}

// n points per class on `classes` noisy spiral arms: x [n*classes, 2], y [n*classes].
void make_spirals(int64_t n, int64_t classes, fm::Generator& gen, fm::Tensor* x, fm::Tensor* y) {
  fm::Tensor r = fm::rand({n * classes}, fm::DType::f32, &gen);
  fm::Tensor noise = fm::randn({n * classes}, fm::DType::f32, &gen) * 0.15;
  std::vector<int64_t> labels(size_t(n * classes));
  for (int64_t i = 0; i < n * classes; ++i) labels[size_t(i)] = i / n;
  *y = fm::tensor(labels);
  fm::Tensor cls = y->to(fm::DType::f32);
  fm::Tensor theta = r * 4.0 + cls * (2.0 * M_PI / double(classes)) + noise;
  fm::Tensor radius = r * 1.0;
  *x = fm::stack({radius * fm::cos(theta), radius * fm::sin(theta)}, 1);
}

fm::Tensor param(const fm::Shape& s, double scale) { return (fm::randn(s) * scale).detach().requires_grad_(); }

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.threads > 0) fm::set_num_threads(args.threads);
    fm::manual_seed(args.seed);
    fm::Generator data_gen(args.seed + 1);
    const int64_t classes = 3, hidden = 64, batch = 256;
    fm::Tensor x_train, y_train, x_test, y_test;
    make_spirals(2000, classes, data_gen, &x_train, &y_train);
    make_spirals(500, classes, data_gen, &x_test, &y_test);

    std::vector<fm::Tensor> params{param({hidden, 2}, 1.0), param({hidden}, 0.0),
                                   param({hidden, hidden}, 1.0 / std::sqrt(double(hidden))), param({hidden}, 0.0),
                                   param({classes, hidden}, 1.0 / std::sqrt(double(hidden))), param({classes}, 0.0)};
    auto forward = [&](const fm::Tensor& x) {
      fm::Tensor h = fm::gelu(fm::linear(x, params[0], params[1]));
      h = fm::gelu(fm::linear(h, params[2], params[3]));
      return fm::linear(h, params[4], params[5]);
    };
    std::vector<fm::Tensor> velocity;
    for (auto& p : params) velocity.push_back(fm::zeros_like(p));

    std::printf("spirals: %lld training points, %d threads, %d steps\n", (long long)x_train.size(0),
                fm::get_num_threads(), args.steps);
    const auto start = std::chrono::steady_clock::now();
    const int64_t n = x_train.size(0);
    for (int step = 1; step <= args.steps; ++step) {
      fm::Tensor idx = fm::randint(0, n, {batch}, fm::DType::i64, &data_gen);
      fm::Tensor loss = fm::cross_entropy(forward(fm::index_select(x_train, 0, idx)), fm::index_select(y_train, 0, idx));
      loss.backward();
      const double lr = 0.1 * 0.5 * (1 + std::cos(M_PI * double(step) / double(args.steps)));  // cosine decay
      {
        fm::NoGradGuard no_grad;
        for (size_t i = 0; i < params.size(); ++i) {  // SGD with momentum 0.9
          velocity[i].copy_(velocity[i] * 0.9 + params[i].grad());
          params[i].copy_(params[i] - velocity[i] * lr);
          params[i].grad().zero_();
        }
      }
      if (step % 100 == 0 || step == args.steps) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("step %5d/%d | loss %.4f | lr %.4f | %.0f samples/s\n", step, args.steps, loss.item(), lr,
                    double(step) * double(batch) / secs);
      }
    }
    fm::NoGradGuard no_grad;
    const double acc = fm::mean(fm::eq(fm::argmax(forward(x_test), 1), y_test).to(fm::DType::f32)).item();
    std::printf("held-out accuracy: %.1f%%\n", 100 * acc);
    return acc > 0.9 ? 0 : 2;
  } catch (const fm::Error& e) {
    std::fprintf(stderr, "spirals: %s\n", e.what());
    return 1;
  }
}

// Finite-difference check of analytic gradients, in f64.
#include <cmath>
#include <sstream>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"

namespace fm {

bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
               std::string* report, const GradcheckOptions& opt) {
  std::vector<Tensor> xs;
  for (const auto& in : inputs) {
    if (!in.defined()) {
      xs.emplace_back();
      continue;
    }
    Tensor x = in.detach().to(Device::cpu());
    x = is_floating(x.dtype()) ? x.to(DType::f64).clone() : x.clone();
    if (in.requires_grad()) x.requires_grad_(true);
    xs.push_back(x);
  }

  Tensor out = f(xs);
  if (!out.requires_grad()) {
    if (report) *report = "gradcheck: the output does not require grad";
    return false;
  }
  Generator gen(12345);
  const Tensor weights = randn(out.shape(), DType::f64, &gen);
  sum(out.to(DType::f64) * weights).backward();

  auto objective = [&]() {
    NoGradGuard ng;
    return sum(f(xs).to(DType::f64) * weights).item();
  };

  for (size_t k = 0; k < xs.size(); ++k) {
    Tensor& x = xs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor analytic = x.grad().defined() ? x.grad().contiguous() : zeros(x.shape(), DType::f64);
    const double* ga = analytic.data<double>();
    double* px = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = px[i];
      px[i] = orig + opt.eps;
      const double plus = objective();
      px[i] = orig - opt.eps;
      const double minus = objective();
      px[i] = orig;
      const double numeric = (plus - minus) / (2 * opt.eps);
      if (!(std::fabs(ga[i] - numeric) <= opt.atol + opt.rtol * std::fabs(numeric))) {
        if (report) {
          std::ostringstream os;
          os << "gradcheck: input " << k << " element " << i << ": analytic " << ga[i] << ", numeric " << numeric;
          *report = os.str();
        }
        return false;
      }
    }
  }
  return true;
}

}  // namespace fm

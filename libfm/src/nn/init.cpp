#include "fm/nn/init.h"

#include <cmath>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops/elementwise.h"

namespace fm::nn::init {

void normal_(const Tensor& t, double mean, double std, Generator* gen) {
  NoGradGuard ng;
  Tensor(t).copy_(randn(t.shape(), TensorOptions(t.dtype()).device(t.device()), gen) * std + mean);
}

void uniform_(const Tensor& t, double low, double high, Generator* gen) {
  NoGradGuard ng;
  Tensor(t).copy_(rand(t.shape(), TensorOptions(t.dtype()).device(t.device()), gen) * (high - low) + low);
}

void zeros_(const Tensor& t) {
  NoGradGuard ng;
  Tensor(t).fill_(0.0);
}

void ones_(const Tensor& t) {
  NoGradGuard ng;
  Tensor(t).fill_(1.0);
}

int64_t fan_in(const Tensor& w) {
  if (w.dim() < 2) error("init: fan_in needs a weight of at least 2 dims, got ", w.shape());
  return w.numel() / w.size(0);
}

int64_t fan_out(const Tensor& w) {
  if (w.dim() < 2) error("init: fan_out needs a weight of at least 2 dims, got ", w.shape());
  return w.numel() / w.size(1);
}

void xavier_uniform_(const Tensor& t, double gain, Generator* gen) {
  const double a = gain * std::sqrt(6.0 / double(fan_in(t) + fan_out(t)));
  uniform_(t, -a, a, gen);
}

void default_uniform_(const Tensor& t, int64_t fan_in, Generator* gen) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  uniform_(t, -bound, bound, gen);
}

}  // namespace fm::nn::init

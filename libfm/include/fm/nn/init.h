#pragma once
// Parameter initialisation, in place (under no_grad), from a Philox stream
// (the default generator when null).
#include "fm/random.h"
#include "fm/tensor.h"

namespace fm::nn::init {

void normal_(const Tensor& t, double mean = 0.0, double std = 1.0, Generator* gen = nullptr);
void uniform_(const Tensor& t, double low, double high, Generator* gen = nullptr);
void zeros_(const Tensor& t);
void ones_(const Tensor& t);
// Glorot: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& t, double gain = 1.0, Generator* gen = nullptr);
// PyTorch's default for Linear and Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_uniform_(const Tensor& t, int64_t fan_in, Generator* gen = nullptr);

// fan_in and fan_out of a weight [out, in, k...].
int64_t fan_in(const Tensor& w);
int64_t fan_out(const Tensor& w);

}  // namespace fm::nn::init

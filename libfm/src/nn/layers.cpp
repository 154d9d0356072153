#include "fm/nn/layers.h"

#include <cmath>
#include <initializer_list>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/init.h"
#include "fm/ops.h"

namespace fm::nn {
namespace {
void check_positive(const char* layer, const char* what, int64_t v) {
  if (v <= 0) error(layer, ": ", what, " must be positive, got ", v);
}

// Checked before any division by groups (a zero would crash, not throw).
void check_conv(const char* layer, int64_t in, int64_t out, int64_t groups, std::initializer_list<int64_t> kernel) {
  check_positive(layer, "in_channels", in);
  check_positive(layer, "out_channels", out);
  check_positive(layer, "groups", groups);
  for (int64_t k : kernel) check_positive(layer, "kernel_size", k);
  if (in % groups != 0 || out % groups != 0)
    error(layer, ": groups ", groups, " must divide in_channels ", in, " and out_channels ", out);
}
}  // namespace

Linear::Linear(const LinearOptions& o) : options(o) {
  check_positive("Linear", "in_features", o.in_features);
  check_positive("Linear", "out_features", o.out_features);
  weight = register_parameter("weight", empty({o.out_features, o.in_features}));
  init::default_uniform_(weight, o.in_features);
  if (o.bias) {
    bias = register_parameter("bias", empty({o.out_features}), kNoDecay);
    init::default_uniform_(bias, o.in_features);
  }
}

Tensor Linear::forward(const Tensor& x) const {
  Tensor y = linear(x, weight, bias);
  if (!has_lora() || lora_merged()) return y;
  const Tensor h = lora_options.dropout > 0 ? dropout(x, lora_options.dropout, is_training()) : x;
  return y + linear(linear(h, lora_A), lora_B) * lora_scale();
}

void Linear::add_lora(const LoraOptions& o, Generator* gen) {
  if (has_lora()) error("Linear: a LoRA adapter is already there");
  check_positive("Linear LoRA", "rank", o.rank);
  if (!(o.alpha > 0) || !(o.dropout >= 0 && o.dropout < 1))
    error("Linear LoRA: alpha must be > 0 and dropout in [0, 1), got ", o.alpha, " and ", o.dropout);
  lora_options = o;
  // Drawn on the CPU (the same numbers on every device), then placed beside the weight.
  Tensor a = empty({o.rank, options.in_features}, TensorOptions(weight.dtype()));
  init::default_uniform_(a, options.in_features, gen);
  lora_A = register_parameter("lora_A", a.to(weight.device()));
  lora_B = register_parameter("lora_B", zeros({options.out_features, o.rank}, TensorOptions(weight.dtype()).device(weight.device())));
}

double Linear::lora_scale() const {
  return lora_options.rslora ? lora_options.alpha / std::sqrt(double(lora_options.rank))
                             : lora_options.alpha / double(lora_options.rank);
}

void Linear::merge_lora() {
  if (!has_lora()) error("Linear: merge_lora without an adapter");
  if (lora_merged()) error("Linear: the LoRA adapter is already merged");
  NoGradGuard ng;
  unmerged_weight_ = weight.clone();
  Tensor(weight).copy_(weight + matmul(lora_B, lora_A) * lora_scale());
}

void Linear::unmerge_lora() {
  if (!lora_merged()) error("Linear: unmerge_lora without a merged adapter");
  NoGradGuard ng;
  Tensor(weight).copy_(unmerged_weight_);
  unmerged_weight_ = Tensor();
}

void Linear::remove_lora() {
  if (!has_lora()) error("Linear: remove_lora without an adapter");
  remove_parameter("lora_A");
  remove_parameter("lora_B");
  lora_A = lora_B = unmerged_weight_ = Tensor();
}

Embedding::Embedding(const EmbeddingOptions& o) : options(o) {
  check_positive("Embedding", "num_embeddings", o.num_embeddings);
  check_positive("Embedding", "embedding_dim", o.embedding_dim);
  if (o.padding_idx < -1 || o.padding_idx >= o.num_embeddings)
    error("Embedding: padding_idx must be -1 (none) or a row of the ", o.num_embeddings, " embeddings, got ",
          o.padding_idx);
  weight = register_parameter("weight", randn({o.num_embeddings, o.embedding_dim}), kNoDecay);
  if (o.padding_idx >= 0) init::zeros_(weight.select(0, o.padding_idx));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(ids, weight, options.padding_idx); }

LayerNorm::LayerNorm(const NormOptions& o) : options(o) {
  check_positive("LayerNorm", "dim", o.dim);
  if (o.affine) {
    weight = register_parameter("weight", ones({o.dim}), kNoDecay);
    if (o.bias) bias = register_parameter("bias", zeros({o.dim}), kNoDecay);
  }
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, {options.dim}, weight, bias, options.eps); }

RMSNorm::RMSNorm(const NormOptions& o) : options(o) {
  check_positive("RMSNorm", "dim", o.dim);
  if (o.affine) weight = register_parameter("weight", ones({o.dim}), kNoDecay);
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, {options.dim}, weight, options.eps); }

GroupNorm::GroupNorm(const GroupNormOptions& o) : options(o) {
  check_positive("GroupNorm", "num_groups", o.num_groups);
  check_positive("GroupNorm", "num_channels", o.num_channels);
  if (o.num_channels % o.num_groups != 0)
    error("GroupNorm: ", o.num_channels, " channels do not divide into ", o.num_groups, " groups");
  if (o.affine) {
    weight = register_parameter("weight", ones({o.num_channels}), kNoDecay);
    bias = register_parameter("bias", zeros({o.num_channels}), kNoDecay);
  }
}

Tensor GroupNorm::forward(const Tensor& x) const { return group_norm(x, options.num_groups, weight, bias, options.eps); }

Dropout::Dropout(double p_) : p(p_) {
  if (p < 0 || p > 1) error("Dropout: p must be in [0, 1], got ", p);
}

Tensor Dropout::forward(const Tensor& x) const { return dropout(x, p, is_training()); }

Conv1d::Conv1d(const Conv1dOptions& o) : options(o) {
  check_conv("Conv1d", o.in_channels, o.out_channels, o.args.groups, {o.kernel_size});
  weight = register_parameter("weight", empty({o.out_channels, o.in_channels / o.args.groups, o.kernel_size}));
  const int64_t fan = init::fan_in(weight);
  init::default_uniform_(weight, fan);
  if (o.bias) {
    bias = register_parameter("bias", empty({o.out_channels}), kNoDecay);
    init::default_uniform_(bias, fan);
  }
}

Tensor Conv1d::forward(const Tensor& x) const { return conv1d(x, weight, bias, options.args); }

Conv2d::Conv2d(const Conv2dOptions& o) : options(o) {
  check_conv("Conv2d", o.in_channels, o.out_channels, o.args.groups, {o.kernel_size[0], o.kernel_size[1]});
  weight = register_parameter(
      "weight", empty({o.out_channels, o.in_channels / o.args.groups, o.kernel_size[0], o.kernel_size[1]}));
  const int64_t fan = init::fan_in(weight);
  init::default_uniform_(weight, fan);
  if (o.bias) {
    bias = register_parameter("bias", empty({o.out_channels}), kNoDecay);
    init::default_uniform_(bias, fan);
  }
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, options.args); }

ConvTranspose2d::ConvTranspose2d(const Conv2dOptions& o) : options(o) {
  check_conv("ConvTranspose2d", o.in_channels, o.out_channels, o.args.groups, {o.kernel_size[0], o.kernel_size[1]});
  weight = register_parameter(
      "weight", empty({o.in_channels, o.out_channels / o.args.groups, o.kernel_size[0], o.kernel_size[1]}));
  // PyTorch computes the fan from weight dim 1 for transposed convolutions.
  const int64_t fan = weight.size(1) * o.kernel_size[0] * o.kernel_size[1];
  init::default_uniform_(weight, fan);
  if (o.bias) {
    bias = register_parameter("bias", empty({o.out_channels}), kNoDecay);
    init::default_uniform_(bias, fan);
  }
}

Tensor ConvTranspose2d::forward(const Tensor& x) const { return conv_transpose2d(x, weight, bias, options.args); }

}  // namespace fm::nn

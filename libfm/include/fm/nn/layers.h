#pragma once
// Basic layers, named and initialised as in PyTorch. Each takes an Options
// struct; parameters are public members and registered under the same names.
#include <string>

#include "fm/nn/module.h"
#include "fm/ops/conv.h"
#include "fm/random.h"

namespace fm::nn {

struct LinearOptions {
  int64_t in_features = 0, out_features = 0;
  bool bias = true;
};
// A low-rank adapter (LoRA, Hu et al. 2021; the layout of peft):
// y = x W^T + b + scale * dropout(x) A^T B^T, scale = alpha / rank
// (alpha / sqrt(rank) with rslora). A starts as Linear's default init, B as zeros.
struct LoraOptions {
  int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;
  bool rslora = false;
};
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& o);
  Tensor forward(const Tensor& x) const;
  LinearOptions options;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] (no_decay) or undefined

  // Registers lora_A [rank, in] and lora_B [out, rank]; one adapter per layer.
  void add_lora(const LoraOptions& o, Generator* gen = nullptr);
  bool has_lora() const { return lora_A.defined(); }
  // W += scale * B A; forward then skips the adapter path (inference, export).
  void merge_lora();
  // W back to its value before merge_lora(), bit for bit (a kept copy, not a subtraction).
  void unmerge_lora();
  bool lora_merged() const { return unmerged_weight_.defined(); }
  // Drops the adapter's parameters; a merged layer keeps the merged W.
  void remove_lora();
  double lora_scale() const;
  LoraOptions lora_options;
  Tensor lora_A, lora_B;

 private:
  Tensor unmerged_weight_;
};

struct EmbeddingOptions {
  int64_t num_embeddings = 0, embedding_dim = 0;
  int64_t padding_idx = -1;
};
class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& o);
  Tensor forward(const Tensor& ids) const;
  EmbeddingOptions options;
  Tensor weight;  // [num, dim], no_decay
};

struct NormOptions {
  int64_t dim = 0;
  double eps = 1e-5;
  bool affine = true;  // learnable weight (and bias for LayerNorm)
  bool bias = true;    // LayerNorm only
};
class LayerNorm : public Module {
 public:
  explicit LayerNorm(const NormOptions& o);
  Tensor forward(const Tensor& x) const;
  NormOptions options;
  Tensor weight, bias;
};
class RMSNorm : public Module {
 public:
  explicit RMSNorm(const NormOptions& o);
  Tensor forward(const Tensor& x) const;
  NormOptions options;
  Tensor weight;
};

struct GroupNormOptions {
  int64_t num_groups = 0, num_channels = 0;
  double eps = 1e-5;
  bool affine = true;
};
class GroupNorm : public Module {
 public:
  explicit GroupNorm(const GroupNormOptions& o);
  Tensor forward(const Tensor& x) const;
  GroupNormOptions options;
  Tensor weight, bias;
};

class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) const;  // identity in eval mode
  double p;
};

struct Conv1dOptions {
  int64_t in_channels = 0, out_channels = 0, kernel_size = 1;
  Conv1dArgs args;
  bool bias = true;
};
class Conv1d : public Module {
 public:
  explicit Conv1d(const Conv1dOptions& o);
  Tensor forward(const Tensor& x) const;
  Conv1dOptions options;
  Tensor weight, bias;
};

struct Conv2dOptions {
  int64_t in_channels = 0, out_channels = 0;
  int64_t kernel_size[2] = {1, 1};
  Conv2dArgs args;
  bool bias = true;
};
class Conv2d : public Module {
 public:
  explicit Conv2d(const Conv2dOptions& o);
  Tensor forward(const Tensor& x) const;
  Conv2dOptions options;
  Tensor weight, bias;
};
class ConvTranspose2d : public Module {
 public:
  explicit ConvTranspose2d(const Conv2dOptions& o);
  Tensor forward(const Tensor& x) const;
  Conv2dOptions options;
  Tensor weight, bias;  // weight [in, out/groups, kh, kw]
};

}  // namespace fm::nn

#pragma once
// Basic layers, named and initialised as in PyTorch. Each takes an Options
// struct; parameters are public members and registered under the same names.
#include <string>

#include "fm/nn/module.h"
#include "fm/ops/conv.h"

namespace fm::nn {

struct LinearOptions {
  int64_t in_features = 0, out_features = 0;
  bool bias = true;
};
class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& o);
  Tensor forward(const Tensor& x) const;
  LinearOptions options;
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] (no_decay) or undefined
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

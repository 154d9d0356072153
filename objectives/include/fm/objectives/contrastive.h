#pragma once
// Contrastive image-text losses, written for gathered features from the
// start (open_clip's ClipLoss with local_loss, and SigLipLoss).
//
// Across ranks: each rank passes its local features [N_local, D] and, for
// the columns, the features of every rank concatenated in rank order
// [world * N_local, D] (all_image / all_text). Rows [rank * N_local,
// (rank + 1) * N_local) of those are replaced by the local features, as
// open_clip's gather_features does, so the local features get their gradient
// along every path whether or not the gather itself carries gradient (with a
// gather that does, the other rows' gradients flow back to their ranks).
// With no gathered features each loss is the single-process one.
//
// logit_scale is the learnable parameter (0-dim or one element) holding
// log(scale); scale = exp(min(logit_scale, ln 100)). open_clip clamps the
// parameter in place after each optimizer step; here the clamp is in the
// forward, so the parameter may drift above ln 100 but the scale never
// does, and the gradient reaching logit_scale is zero while it is above the
// clamp (it passes at exactly ln 100, as torch.clamp). Both losses clamp:
// open_clip's training loop clamps every model's logit_scale.
//
// Features are expected L2-normalised by the model (not checked). Logits
// are formed in the features' dtype and the loss computed in f32 at least
// (f64 stays f64). The accuracies are in-batch top-1 (argmax on the
// detached logits), for logs only.
#include <cstdint>

#include "fm/tensor.h"

namespace fm::objectives {

constexpr double kClipLogitScaleInit = 2.659260036932778;  // ln(1/0.07), CLIP's init
constexpr double kClipLogitScaleMax = 4.605170185988092;   // ln(100), the clamp
constexpr double kSiglipLogitScaleInit = 2.302585092994046;  // ln(10), SigLIP's init
constexpr double kSiglipLogitBiasInit = -10.0;               // SigLIP's init

struct ContrastiveOutput {
  Tensor loss;               // 0-dim, differentiable
  double accuracy_i2t = 0;   // fraction of local images whose top text is their own
  double accuracy_t2i = 0;   // fraction of local texts whose top image is their own
};

// CLIP's symmetric InfoNCE:
//   logits_per_image = scale * image_features @ all_text^T    [N_local, N_global]
//   logits_per_text  = scale * text_features  @ all_image^T   [N_local, N_global]
//   labels = arange(N_local) + rank * N_local
//   loss = (cross_entropy(logits_per_image, labels) + cross_entropy(logits_per_text, labels)) / 2
// all_image and all_text are given together or not at all.
ContrastiveOutput clip_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                            const Tensor& all_image = {}, const Tensor& all_text = {}, int64_t rank = 0);

// SigLIP's pairwise sigmoid loss:
//   logits = scale * image_features @ all_text^T + logit_bias          [N_local, N_global]
//   labels = +1 where column == rank * N_local + row, -1 elsewhere
//   loss = -sum(log_sigmoid(labels * logits)) / N_local
// With gathered text the blocks of other ranks are all negatives (open_clip's
// SigLipLoss summed over its neighbour exchange). logit_bias: 0-dim or one
// element, initialised by the model at kSiglipLogitBiasInit; logit_scale at
// kSiglipLogitScaleInit. accuracy_t2i reads the local block only.
ContrastiveOutput siglip_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                              const Tensor& logit_bias, const Tensor& all_text = {}, int64_t rank = 0);

}  // namespace fm::objectives

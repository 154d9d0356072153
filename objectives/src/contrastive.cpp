// CLIP and SigLIP losses as compositions of fm ops (matmul, exp, clamp,
// cross_entropy), so autograd differentiates them and every backend runs them.
#include "fm/objectives/contrastive.h"

#include <vector>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/linalg.h"
#include "fm/ops/loss.h"
#include "fm/ops/reduce.h"
#include "fm/ops/shape_ops.h"

namespace fm::objectives {
namespace {

void check_features(const char* op, const char* what, const Tensor& x) {
  if (!x.defined()) error(op, ": ", what, " is undefined");
  if (x.dim() != 2 || !is_floating(x.dtype()) || x.size(0) == 0)
    error(op, ": ", what, " must be floating [N, D] with N > 0, got ", name(x.dtype()), " ", x.shape());
}

void check_pair(const char* op, const Tensor& image, const Tensor& text) {
  check_features(op, "image_features", image);
  check_features(op, "text_features", text);
  if (image.shape() != text.shape())
    error(op, ": image_features ", image.shape(), " and text_features ", text.shape(), " differ");
}

// A learnable scalar (logit_scale, logit_bias) as a 0-dim view.
Tensor scalar_param(const char* op, const char* what, const Tensor& p) {
  if (!p.defined()) error(op, ": ", what, " is undefined");
  if (p.numel() != 1 || !is_floating(p.dtype()))
    error(op, ": ", what, " must be a floating scalar, got ", name(p.dtype()), " ", p.shape());
  return p.reshape({});
}

// exp(min(logit_scale, ln 100)): clamped in the forward (see the header).
Tensor scale_of(const char* op, const Tensor& logit_scale) {
  return exp(clamp_max(scalar_param(op, "logit_scale", logit_scale), kClipLogitScaleMax));
}

// The columns the local rows are scored against: the gathered features with
// rows [rank * N, (rank + 1) * N) replaced by the local ones (so gradient
// reaches them), or the local features alone.
Tensor columns(const char* op, const char* what, const Tensor& local, const Tensor& all, int64_t rank) {
  const int64_t n = local.size(0);
  if (!all.defined()) {
    if (rank != 0) error(op, ": rank ", rank, " needs gathered features (", what, " is undefined)");
    return local;
  }
  check_features(op, what, all);
  if (all.size(1) != local.size(1) || all.size(0) % n != 0)
    error(op, ": ", what, " ", all.shape(), " must be [world * ", n, ", ", local.size(1), "] for local features ",
          local.shape());
  if (rank < 0 || rank >= all.size(0) / n)
    error(op, ": rank ", rank, " outside [0, ", all.size(0) / n, ") for ", what, " ", all.shape());
  std::vector<Tensor> parts;
  if (rank > 0) parts.push_back(all.slice(0, 0, rank * n));
  parts.push_back(local.to(all.dtype()));
  if ((rank + 1) * n < all.size(0)) parts.push_back(all.slice(0, (rank + 1) * n, all.size(0)));
  return parts.size() == 1 ? parts[0] : cat(parts, 0);
}

// Losses in f32 at least: bf16/f16 logits are converted, f64 stays.
Tensor loss_precision(const Tensor& x) {
  return x.dtype() == DType::f32 || x.dtype() == DType::f64 ? x : x.to(DType::f32);
}

// Fraction of the rows of `scores` [N, M] whose argmax along `dim` is its own
// index + offset (dim 1: row i's pick; dim 0: column i's pick).
double top1(const Tensor& scores, int64_t dim, int64_t offset) {
  NoGradGuard ng;
  const std::vector<int64_t> picks = argmax(scores.detach(), dim).to(Device::cpu()).to_vector<int64_t>();
  int64_t hits = 0;
  for (size_t i = 0; i < picks.size(); ++i) hits += picks[i] == int64_t(i) + offset;
  return double(hits) / double(picks.size());
}

}  // namespace

ContrastiveOutput clip_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                            const Tensor& all_image, const Tensor& all_text, int64_t rank) {
  constexpr const char* op = "clip_loss";
  check_pair(op, image_features, text_features);
  if (all_image.defined() != all_text.defined())
    error(op, ": all_image and all_text are given together or not at all");
  const Tensor scale = scale_of(op, logit_scale);
  const Tensor image_cols = columns(op, "all_image", image_features, all_image, rank);
  const Tensor text_cols = columns(op, "all_text", text_features, all_text, rank);
  if (image_cols.size(0) != text_cols.size(0))
    error(op, ": all_image ", image_cols.shape(), " and all_text ", text_cols.shape(), " differ in rows");

  const Tensor logits_per_image = loss_precision(matmul(image_features, text_cols.t())) * scale;
  const Tensor logits_per_text = loss_precision(matmul(text_features, image_cols.t())) * scale;
  const int64_t n = image_features.size(0), offset = rank * n;
  const Tensor labels = arange(double(offset), double(offset + n), 1.0,
                               TensorOptions(DType::i64).device(image_features.device()));
  ContrastiveOutput out;
  out.loss = (cross_entropy(logits_per_image, labels) + cross_entropy(logits_per_text, labels)) * 0.5;
  out.accuracy_i2t = top1(logits_per_image, 1, offset);
  out.accuracy_t2i = top1(logits_per_text, 1, offset);
  return out;
}

ContrastiveOutput siglip_loss(const Tensor& image_features, const Tensor& text_features, const Tensor& logit_scale,
                              const Tensor& logit_bias, const Tensor& all_text, int64_t rank) {
  constexpr const char* op = "siglip_loss";
  check_pair(op, image_features, text_features);
  const Tensor scale = scale_of(op, logit_scale);
  const Tensor bias = scalar_param(op, "logit_bias", logit_bias);
  const Tensor text_cols = columns(op, "all_text", text_features, all_text, rank);

  const int64_t n = image_features.size(0), m = text_cols.size(0), offset = rank * n;
  const Tensor logits = loss_precision(matmul(image_features, text_cols.t())) * scale + bias;
  const TensorOptions index_options = TensorOptions(DType::i64).device(logits.device());
  const Tensor positive = eq(arange(double(m), index_options).unsqueeze(0),
                             arange(double(offset), double(offset + n), 1.0, index_options).unsqueeze(1));
  const Tensor signed_logits = where(positive, logits, -logits);
  // -log sigmoid(z) = -log(e^z / (e^0 + e^z)): the cross-entropy of the two
  // logits (0, z) for class 1, which the fused kernel computes stably.
  const Tensor pairs = stack({zeros_like(signed_logits), signed_logits}, -1);
  const Tensor class1 = ones({n, m}, index_options);
  ContrastiveOutput out;
  out.loss = cross_entropy(pairs, class1, -100, 0.0, "sum") / double(n);
  out.accuracy_i2t = top1(logits, 1, offset);
  out.accuracy_t2i = top1(logits.slice(1, offset, offset + n), 0, 0);
  return out;
}

}  // namespace fm::objectives

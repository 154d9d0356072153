#pragma once
// Kernel slots of softmax, the normalisations and cross-entropy. Conventions
// as in fm/kernels/core.h: outputs first, allocated by the caller. Every
// tensor here is contiguous; matrices are [rows, n] and work is per row.
// Statistics (mean, rstd, lse, per-row loss and its gradient) are f64 for
// f64 inputs and f32 otherwise; bf16/f16 data is computed in f32.
#include <cstdint>

#include "fm/kernels/kernel.h"
#include "fm/tensor.h"

namespace fm::kernels {

// y = softmax(x) (or log_softmax when `log`) along each row.
extern Kernel<void(const Tensor& y, const Tensor& x, bool log)> softmax_forward;
// dx from dy and the forward output y: y * (dy - sum(dy * y)) for softmax,
// dy - exp(y) * sum(dy) for log_softmax.
extern Kernel<void(const Tensor& dx, const Tensor& dy, const Tensor& y, bool log)> softmax_backward;

// y = (x - mean) * rstd * weight + bias per row; saves mean and rstd [rows].
// weight and bias are [n] in x's dtype, or undefined.
extern Kernel<void(const Tensor& y, const Tensor& mean, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                   const Tensor& bias, double eps)>
    layer_norm_forward;
// Any of dx, dweight, dbias may be undefined (not wanted). dweight and dbias
// are summed over rows in an order that does not depend on the thread count.
extern Kernel<void(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy, const Tensor& x,
                   const Tensor& mean, const Tensor& rstd, const Tensor& weight)>
    layer_norm_backward;

// y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps); saves rstd [rows].
extern Kernel<void(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight, double eps)>
    rms_norm_forward;
extern Kernel<void(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x, const Tensor& rstd,
                   const Tensor& weight)>
    rms_norm_backward;

// Per-row loss [rows] and logsumexp [rows] of logits [rows, C] against
// integer targets [rows] (i32 or i64): loss = lse - (1 - s) * x[t] - s *
// mean(x) with s the label smoothing; 0 where target == ignore_index.
// Backends raise fm::Error for any other target outside [0, C).
extern Kernel<void(const Tensor& loss, const Tensor& lse, const Tensor& logits, const Tensor& target,
                   int64_t ignore_index, double label_smoothing)>
    cross_entropy_forward;
// dlogits[r] = grad_loss[r] * (softmax(x[r]) - (1 - s) * onehot(t) - s / C),
// softmax recomputed from the saved lse; zero rows where ignored.
extern Kernel<void(const Tensor& dlogits, const Tensor& grad_loss, const Tensor& logits, const Tensor& target,
                   const Tensor& lse, int64_t ignore_index, double label_smoothing)>
    cross_entropy_backward;

// Raises unless logits are contiguous [rows, C] and target contiguous [rows]:
// the cross-entropy kernels' input check, shared by the backends.
void check_cross_entropy_inputs(const Tensor& logits, const Tensor& target);

}  // namespace fm::kernels

// Next-token cross-entropy: shape checks, then fm::cross_entropy (the fused
// kernel) over every position at once.
#include "fm/objectives/next_token.h"

#include "fm/factory.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/loss.h"

namespace fm::objectives {
namespace {

void check_logits(const char* op, const Tensor& logits) {
  if (!logits.defined()) error(op, ": logits are undefined");
  if (logits.dim() != 3 || !is_floating(logits.dtype()))
    error(op, ": logits must be floating [B, T, V], got ", name(logits.dtype()), " ", logits.shape());
}

void check_tokens(const char* op, const char* what, const Tensor& logits, const Tensor& tokens) {
  if (!tokens.defined()) error(op, ": ", what, " are undefined");
  if (tokens.dtype() != DType::i64 && tokens.dtype() != DType::i32)
    error(op, ": ", what, " must be int32 or int64, got ", name(tokens.dtype()));
  if (tokens.shape() != Shape{logits.size(0), logits.size(1)})
    error(op, ": logits ", logits.shape(), " need ", what, " [", logits.size(0), ", ", logits.size(1), "], got ",
          tokens.shape());
}

}  // namespace

Tensor next_token_loss(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  check_logits("next_token_loss", logits);
  check_tokens("next_token_loss", "targets", logits, targets);
  return cross_entropy(logits, targets, ignore_index);
}

Tensor next_token_loss_shifted(const Tensor& logits, const Tensor& tokens, const Tensor& loss_mask) {
  constexpr int64_t kIgnore = -100;
  check_logits("next_token_loss_shifted", logits);
  check_tokens("next_token_loss_shifted", "tokens", logits, tokens);
  const int64_t T = logits.size(1);
  if (T < 2) error("next_token_loss_shifted: logits ", logits.shape(), " need T >= 2 to predict a next token");
  Tensor targets = tokens.slice(1, 1, T);
  if (loss_mask.defined()) {
    if (loss_mask.shape() != tokens.shape())
      error("next_token_loss_shifted: loss_mask ", loss_mask.shape(), " must match tokens ", tokens.shape());
    if (!is_integral(loss_mask.dtype()))
      error("next_token_loss_shifted: loss_mask must be bool or integer, got ", name(loss_mask.dtype()));
    if (loss_mask.device() != tokens.device())
      error("next_token_loss_shifted: loss_mask on ", loss_mask.device().str(), " but tokens on ",
            tokens.device().str());
    Tensor counts = ne(loss_mask.slice(1, 1, T), zeros({}, TensorOptions(loss_mask.dtype()).device(loss_mask.device())));
    targets = where(counts, targets, full({}, double(kIgnore), TensorOptions(targets.dtype()).device(targets.device())));
  }
  return cross_entropy(logits.slice(1, 0, T - 1), targets, kIgnore);
}

}  // namespace fm::objectives

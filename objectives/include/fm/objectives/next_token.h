#pragma once
// Next-token prediction: the cross-entropy every token segment (text,
// captions, audio codes) is trained with. The one implementation the
// trainer, benchmarks and tests call.
#include <cstdint>

#include "fm/tensor.h"

namespace fm::objectives {

// logits [B, T, V] (floating), targets [B, T] (i32 or i64), already aligned:
// targets[b, t] is the token logits[b, t] predicts. Mean cross-entropy over
// the positions whose target is not ignore_index (fm::cross_entropy; NaN
// when none counts, as PyTorch).
Tensor next_token_loss(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// The shifting form: logits[:, t] predicts tokens[:, t + 1], so the loss
// reads logits[:, :-1] against tokens[:, 1:]. loss_mask [B, T] (bool or
// integer; undefined = every token) says which tokens count as targets
// (1 = counts): a mask that is 1 on a caption segment alone puts the loss
// there. Its first column is never read (token 0 is no target). Tokens equal
// to -100 are ignored as well, mask or not. Mean over the counted targets
// (NaN when none counts).
Tensor next_token_loss_shifted(const Tensor& logits, const Tensor& tokens, const Tensor& loss_mask = {});

}  // namespace fm::objectives

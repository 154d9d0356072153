#pragma once
// ZeRO stage 1: AdamW whose state is sharded across ranks. Each flat buffer
// (fm/nn/flat.h) of L elements is cut into W shards of ceil(L / W); rank r
// keeps exp_avg and exp_avg_sq only for shard r (1/W of plain AdamW's state).
// A step: reduce-scatter the gradients (average) so each rank holds its
// shard of the world's gradient; clip by the global norm (the shards'
// squared norms all-reduced); update the shard; all-gather the parameters.
// The numbers are plain data parallelism's (the same AdamW kernel, the same
// averaged gradients), up to the summation order of the reductions.
//
// state_dict() gathers the shards into plain AdamW's layout
// ("exp_avg.<param>", "exp_avg_sq.<param>", "step"), and load_state_dict()
// takes that layout and keeps this rank's shard: checkpoints move between
// ZeRO-1 and plain runs and between world sizes.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fm/dist/communicator.h"
#include "fm/nn/flat.h"
#include "fm/optim/adamw.h"

namespace fm::dist {

class Zero1 {
 public:
  // Parameters tagged nn::kNoDecay get no weight decay (as default_groups).
  Zero1(std::shared_ptr<Communicator> comm, const nn::FlatParameters& flat, const optim::AdamWOptions& options);

  void set_lr(double lr) { lr_ = lr; }
  void zero_grad();
  // After backward: the gradients reduce-scattered and multiplied by
  // grad_scale (a loss scaler's 1 / scale), clipped to max_norm (<= 0: no
  // clipping), the shard updated, the parameters all-gathered. Returns the
  // gradient's global norm; when it is not finite (an Inf or NaN anywhere in
  // the world's gradient) nothing is updated, on every rank alike.
  double step(double max_norm, double grad_scale = 1.0);

  std::map<std::string, Tensor> state_dict() const;  // collective: every rank must call it
  void load_state_dict(const std::map<std::string, Tensor>& state);
  int64_t state_elements() const;  // this rank's optimizer state, elements (for tests)

 private:
  struct Piece {  // a stretch of this rank's shard with one weight decay
    int64_t offset, length;
    double weight_decay;
    Tensor exp_avg, exp_avg_sq;
  };
  struct Group {
    nn::FlatGroup flat;  // handles share the model's buffers
    int64_t shard = 0;  // elements per rank
    std::vector<Piece> pieces;
    Tensor grad_shard;  // [shard]: this rank's block of the averaged gradient
  };
  Tensor full_state(const Group& g, bool second) const;

  std::shared_ptr<Communicator> comm_;
  optim::AdamWOptions options_;
  std::vector<Group> groups_;
  double lr_ = 0;
  int64_t step_ = 0;
};

}  // namespace fm::dist

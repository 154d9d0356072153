#pragma once
// Data parallelism on flat parameters (fm/nn/flat.h): every rank holds the
// whole model and a shard of the batch; gradients are averaged across ranks
// before the optimizer step, so W ranks with batch B take the step one rank
// takes with batch W * B.
//
// Each flat gradient buffer is cut into buckets of about bucket_bytes, in
// reverse registration order (the order backward produces gradients). A
// parameter's post-accumulate hook counts it ready; the hook that completes a
// bucket launches its all-reduce (average) at once, so communication runs
// while backward computes the rest. finish() launches the buckets whose
// parameters received no gradient (unused this step) and waits for all.
// Only the last micro-step of an accumulation reduces (set_sync).
#include <cstdint>
#include <memory>
#include <vector>

#include "fm/dist/communicator.h"
#include "fm/nn/flat.h"

namespace fm::dist {

class GradientReducer {
 public:
  // Registers hooks on every flat parameter: keep the reducer alive as long
  // as the model trains.
  GradientReducer(std::shared_ptr<Communicator> comm, const nn::FlatParameters& flat, int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each backward: whether its gradients are the step's last (reduce
  // them) or an accumulation micro-step's (keep them local).
  void set_sync(bool sync);
  // After the last backward: every bucket reduced and waited for.
  void finish();

  int64_t buckets() const;
  int64_t launched_in_backward() const;  // buckets the hooks launched in the last synced backward

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Rank 0's values of every flat buffer on every rank (the start of training).
void broadcast_parameters(Communicator& comm, const nn::FlatParameters& flat);

}  // namespace fm::dist

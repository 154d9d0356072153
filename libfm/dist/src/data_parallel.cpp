#include "fm/dist/data_parallel.h"

#include <algorithm>
#include <mutex>

#include "fm/error.h"

namespace fm::dist {

struct GradientReducer::State {
  struct Bucket {
    Tensor grad;          // a contiguous view of the flat gradient
    int64_t params = 0;   // parameters in it
    int64_t ready = 0;    // of them, final in this backward
    std::shared_ptr<Work> work;
  };
  std::shared_ptr<Communicator> comm;
  std::vector<Bucket> buckets;
  bool sync = true;
  int64_t launched = 0;
  std::mutex mu;  // hooks may run on the backward thread while finish() is called on another

  void launch(Bucket& b) {
    b.work = comm->all_reduce_async(b.grad, ReduceOp::average);
    // Poll the earlier ones: MPI progresses nonblocking collectives inside its calls.
    for (Bucket& o : buckets)
      if (o.work && &o != &b) o.work->done();
  }

  void ready(size_t bucket) {
    std::lock_guard<std::mutex> lock(mu);
    if (!sync) return;
    Bucket& b = buckets[bucket];
    if (++b.ready == b.params && !b.work) {
      launch(b);
      ++launched;
    }
  }
};

GradientReducer::GradientReducer(std::shared_ptr<Communicator> comm, const nn::FlatParameters& flat,
                                 int64_t bucket_bytes)
    : state_(std::make_shared<State>()) {
  if (bucket_bytes < 1) error("GradientReducer: bucket_bytes must be positive, got ", bucket_bytes);
  state_->comm = std::move(comm);
  for (const nn::FlatGroup& g : flat.groups) {
    std::vector<const nn::FlatSlot*> slots;
    for (const nn::FlatSlot& s : g.slots) slots.push_back(&s);
    std::sort(slots.begin(), slots.end(), [](auto* a, auto* b) { return a->offset > b->offset; });  // backward order
    const int64_t item = int64_t(fm::itemsize(g.dtype));
    size_t i = 0;
    while (i < slots.size()) {
      // Slots i..j-1 (descending offsets) make one contiguous range [lo, hi).
      const int64_t hi = slots[i]->offset + slots[i]->numel;
      size_t j = i;
      int64_t lo = hi;
      while (j < slots.size() && ((hi - lo) * item < bucket_bytes || j == i)) lo = slots[j++]->offset;
      State::Bucket b;
      b.grad = g.grad.narrow(0, lo, hi - lo);
      b.params = int64_t(j - i);
      const size_t index = state_->buckets.size();
      state_->buckets.push_back(b);
      std::weak_ptr<State> weak = state_;
      for (size_t k = i; k < j; ++k)
        slots[k]->param.register_post_accumulate_grad_hook([weak, index](const Tensor&) {
          if (auto s = weak.lock()) s->ready(index);
        });
      i = j;
    }
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->sync = sync;
  state_->launched = 0;
  for (auto& b : state_->buckets) b.ready = 0, b.work.reset();
}

void GradientReducer::finish() {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->sync) error("GradientReducer::finish: the last backward ran with set_sync(false)");
  for (auto& b : state_->buckets)
    if (!b.work) state_->launch(b);
  for (auto& b : state_->buckets) b.work->wait();
  for (auto& b : state_->buckets) b.work.reset(), b.ready = 0;
}

int64_t GradientReducer::buckets() const { return int64_t(state_->buckets.size()); }
int64_t GradientReducer::launched_in_backward() const { return state_->launched; }

void broadcast_parameters(Communicator& comm, const nn::FlatParameters& flat) {
  for (const nn::FlatGroup& g : flat.groups) comm.broadcast(g.data, 0);
}

}  // namespace fm::dist

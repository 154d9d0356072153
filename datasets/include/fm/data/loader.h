#pragma once
// fm::data::DataLoader: batches of transformed samples from an
// ImageTextSource, read ahead by worker threads, in an order that depends
// only on the options (never on thread count or timing).
//
// Order. Epoch e visits a permutation of [0, N) that is a pure function of
// (seed, e) (Fisher-Yates with Philox draws; the identity when !shuffle).
// As torch's DistributedSampler, the permutation is padded by repeating its
// start to a multiple of world_size, and rank r takes elements r, r + W,
// r + 2W, ...: ceil(N / W) samples per rank per epoch. Batch k of an epoch
// holds that rank's samples [k*B, k*B + B) (the last one shorter unless
// drop_last). position() counts batches across epochs.
//
// Transform. transform(sample, sample_seed) turns a sample into named
// tensors (the same names and shapes for every sample); sample_seed is a pure
// function of (seed, epoch, source index), for augmentation. It runs on
// worker threads: it must not use fm's default generator (construct an
// fm::Generator from sample_seed instead).
//
// Corrupt samples. When read() or the transform throws fm::Error, the sample
// is skipped, counted, and its origin and message recorded; the batch is
// filled with the next samples of the rank's epoch order after the batch
// (wrapping to the epoch's start), the first ones that succeed. So batch k
// always starts at sample k*B whatever failed before it, and set_position is
// exact without replaying the past; the price is that a replacement sample
// appears twice in that epoch. Other exceptions propagate from next().
//
// Threads. workers = 0 reads and transforms in the calling thread. Otherwise
// `workers` threads take samples of the next `prefetch` batches in order and
// the calling thread waits for the batch it needs, fills failures and
// stacks (fm::stack) there. The destructor stops and joins the workers, also
// when they wait for room.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fm/data/image_text.h"
#include "fm/tensor.h"

namespace fm::data {

using Example = std::map<std::string, Tensor>;  // one sample's tensors
using Transform = std::function<Example(const ImageTextSample& sample, uint64_t sample_seed)>;

struct LoaderOptions {
  int64_t batch_size = 32;
  int workers = 2;
  int prefetch = 4;  // batches read ahead (with workers > 0)
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  bool shuffle = true;
  bool drop_last = true;  // drop each epoch's last, incomplete batch
};

struct LoaderBatch {
  Example tensors;               // name -> [b, ...], the samples stacked along dim 0
  std::vector<int64_t> indices;  // source index of each row
  std::vector<std::string> keys;  // sample key of each row
  int64_t epoch = 0;
  int64_t position = 0;  // this batch's number (position() before next())
  int64_t skipped = 0;   // samples skipped by this loader so far, this batch's included
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const ImageTextSource> source, Transform transform, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  LoaderBatch next();  // batch position(), then advances

  int64_t position() const { return position_; }  // batches drawn so far (save it in checkpoints)
  // The next batch becomes batch `position` of the stream a run that never
  // stopped would draw. Drops what the workers had read ahead.
  void set_position(int64_t position);

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t samples_per_rank() const { return per_rank_; }  // per epoch
  // Samples skipped by next() calls of this loader (not those before a
  // set_position jump), and "origin: message" for the first few.
  int64_t skipped() const { return skipped_; }
  std::vector<std::string> skip_messages() const { return skip_messages_; }
  const LoaderOptions& options() const { return options_; }

  // The source index of sample i (in [0, samples_per_rank())) of this rank in epoch e.
  int64_t sample_index(int64_t epoch, int64_t i) const;
  uint64_t sample_seed(int64_t epoch, int64_t index) const;

 private:
  struct Pipeline;
  struct Attempt;
  struct PermutationCache;
  int64_t batch_rows(int64_t position) const;
  Attempt attempt(int64_t epoch, int64_t i) const;
  void record_skip(const Attempt& a);
  void start_workers();
  void stop_workers();
  void work();  // a worker thread's loop
  LoaderBatch assemble(int64_t position, std::vector<Attempt> attempts);

  std::shared_ptr<const ImageTextSource> source_;
  Transform transform_;
  LoaderOptions options_;
  int64_t per_rank_ = 0, batches_per_epoch_ = 0;
  int64_t position_ = 0;
  int64_t skipped_ = 0;
  std::vector<std::string> skip_messages_;
  std::unique_ptr<Pipeline> pipeline_;  // worker threads, while running
  std::unique_ptr<PermutationCache> permutations_;  // the shuffles of the latest epochs
};

}  // namespace fm::data

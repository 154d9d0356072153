#include "fm/data/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>

#include "fm/error.h"
#include "fm/ops.h"
#include "fm/random.h"

namespace fm::data {
namespace {

// Counter words 2 and 3 of the loader's Philox draws: (epoch, stream tag).
// The tags are odd for shuffles and even (non-zero) for sample seeds, and an
// fm::Generator always leaves both words 0, so these draws share no block
// with any Generator of the same seed.
std::array<uint32_t, 4> counter(uint64_t n, int64_t epoch, uint32_t tag) {
  const uint64_t e = uint64_t(epoch);
  return {uint32_t(n), uint32_t(n >> 32), uint32_t(e), tag + (uint32_t(e >> 32) << 1)};
}
constexpr uint32_t kShuffleTag = 1, kSampleSeedTag = 2;

std::array<uint32_t, 2> key(uint64_t seed) { return {uint32_t(seed), uint32_t(seed >> 32)}; }

// Uniform in [0, n) from 64 random bits by multiply-shift; the bias is below n / 2^64.
int64_t uniform_below(uint64_t bits, int64_t n) {
  return int64_t((static_cast<unsigned __int128>(bits) * uint64_t(n)) >> 64);
}

constexpr size_t kMaxSkipMessages = 20;

}  // namespace

struct DataLoader::Attempt {
  int64_t index = -1;
  std::string key, origin;
  Example example;
  bool failed = false;  // fm::Error from read() or the transform: skip the sample
  std::string message;
  std::exception_ptr fatal;  // any other exception: rethrown by next()
};

// The permutations of the two latest epochs asked for (the workers may be
// one epoch ahead of the calling thread); computed once each.
struct DataLoader::PermutationCache {
  std::mutex mu;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> by_epoch;
};

struct DataLoader::Pipeline {
  struct Slots {
    std::vector<Attempt> attempts;
    int64_t done = 0;
  };
  std::mutex mu;
  std::condition_variable work_cv;  // workers: room to read ahead, or stop
  std::condition_variable done_cv;  // the calling thread: a batch is complete
  bool stop = false;
  int64_t wanted = 0;                    // the batch next() waits for
  int64_t claim_batch = 0, claim_row = 0;  // the next sample a worker takes
  std::map<int64_t, Slots> batches;      // batches being read, by position
  std::vector<std::thread> threads;
};

DataLoader::DataLoader(std::shared_ptr<const ImageTextSource> source, Transform transform, LoaderOptions options)
    : source_(std::move(source)),
      transform_(std::move(transform)),
      options_(options),
      permutations_(std::make_unique<PermutationCache>()) {
  const LoaderOptions& o = options_;
  FM_CHECK(source_ != nullptr, "DataLoader: no source");
  FM_CHECK(bool(transform_), "DataLoader: no transform");
  FM_CHECK(o.batch_size >= 1, "DataLoader: batch_size ", o.batch_size, " must be at least 1");
  FM_CHECK(o.workers >= 0 && o.prefetch >= 1, "DataLoader: workers ", o.workers, " must be >= 0 and prefetch ",
           o.prefetch, " >= 1");
  FM_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "DataLoader: rank ", o.rank,
           " is not in [0, world_size = ", o.world_size, ")");
  const int64_t n = source_->size();
  FM_CHECK(n >= 1, "DataLoader: source ", source_->name(), " has no samples");
  per_rank_ = (n + o.world_size - 1) / o.world_size;
  batches_per_epoch_ = o.drop_last ? per_rank_ / o.batch_size : (per_rank_ + o.batch_size - 1) / o.batch_size;
  FM_CHECK(batches_per_epoch_ >= 1, "DataLoader: source ", source_->name(), " gives each of ", o.world_size,
           " ranks ", per_rank_, " samples per epoch, fewer than batch_size ", o.batch_size,
           " (set drop_last = false to use them)");
}

DataLoader::~DataLoader() { stop_workers(); }

int64_t DataLoader::sample_index(int64_t epoch, int64_t i) const {
  const int64_t n = source_->size();
  const int64_t j = (i * options_.world_size + options_.rank) % n;  // past n: the padding repeats the start
  if (!options_.shuffle) return j;
  std::shared_ptr<const std::vector<int64_t>> perm;
  {
    std::lock_guard<std::mutex> lock(permutations_->mu);
    auto& cache = permutations_->by_epoch;
    auto it = cache.find(epoch);
    if (it == cache.end()) {
      // Fisher-Yates; draw i comes from its own counter block, so the result
      // is a pure function of (seed, epoch).
      auto p = std::make_shared<std::vector<int64_t>>(size_t(n));
      std::iota(p->begin(), p->end(), int64_t(0));
      for (int64_t k = n - 1; k >= 1; --k) {
        const auto lanes = philox4x32(counter(uint64_t(k), epoch, kShuffleTag), key(options_.seed));
        std::swap((*p)[size_t(k)], (*p)[size_t(uniform_below(uint64_t(lanes[0]) << 32 | lanes[1], k + 1))]);
      }
      it = cache.emplace(epoch, std::move(p)).first;
      if (cache.size() > 2) cache.erase(cache.begin() == it ? std::next(cache.begin()) : cache.begin());
    }
    perm = it->second;
  }
  return (*perm)[size_t(j)];
}

uint64_t DataLoader::sample_seed(int64_t epoch, int64_t index) const {
  const auto lanes = philox4x32(counter(uint64_t(index), epoch, kSampleSeedTag), key(options_.seed));
  return uint64_t(lanes[0]) << 32 | lanes[1];
}

int64_t DataLoader::batch_rows(int64_t position) const {
  const int64_t k = position % batches_per_epoch_;
  return std::min(options_.batch_size, per_rank_ - k * options_.batch_size);
}

DataLoader::Attempt DataLoader::attempt(int64_t epoch, int64_t i) const {
  Attempt a;
  a.index = sample_index(epoch, i);
  a.origin = source_->name() + "[" + std::to_string(a.index) + "]";  // until the sample says better
  try {
    const ImageTextSample sample = source_->read(a.index);
    a.key = sample.key;
    if (!sample.origin.empty()) a.origin = sample.origin;
    a.example = transform_(sample, sample_seed(epoch, a.index));
  } catch (const Error& e) {
    a.failed = true;
    a.message = e.what();
  } catch (...) {
    a.fatal = std::current_exception();
  }
  return a;
}

void DataLoader::record_skip(const Attempt& a) {
  ++skipped_;
  if (skip_messages_.size() < kMaxSkipMessages) skip_messages_.push_back(a.origin + ": " + a.message);
}

void DataLoader::set_position(int64_t position) {
  FM_CHECK(position >= 0, "DataLoader::set_position: position ", position, " is negative");
  stop_workers();
  position_ = position;
}

void DataLoader::start_workers() {
  pipeline_ = std::make_unique<Pipeline>();
  pipeline_->wanted = pipeline_->claim_batch = position_;
  for (int w = 0; w < options_.workers; ++w) pipeline_->threads.emplace_back([this] { work(); });
}

void DataLoader::stop_workers() {
  if (!pipeline_) return;
  {
    std::lock_guard<std::mutex> lock(pipeline_->mu);
    pipeline_->stop = true;
  }
  pipeline_->work_cv.notify_all();
  for (std::thread& t : pipeline_->threads) t.join();
  pipeline_.reset();
}

void DataLoader::work() {
  Pipeline& p = *pipeline_;
  std::unique_lock<std::mutex> lock(p.mu);
  for (;;) {
    p.work_cv.wait(lock, [&] { return p.stop || p.claim_batch < p.wanted + options_.prefetch; });
    if (p.stop) return;
    const int64_t batch = p.claim_batch, row = p.claim_row;
    const int64_t rows = batch_rows(batch);
    Pipeline::Slots& slots = p.batches[batch];
    if (slots.attempts.empty()) slots.attempts.resize(size_t(rows));
    if (++p.claim_row == rows) ++p.claim_batch, p.claim_row = 0;
    lock.unlock();
    const int64_t epoch = batch / batches_per_epoch_;
    Attempt a = attempt(epoch, (batch % batches_per_epoch_) * options_.batch_size + row);
    lock.lock();
    slots.attempts[size_t(row)] = std::move(a);  // map nodes stay put; next() takes this one only when done
    if (++slots.done == rows) p.done_cv.notify_all();
  }
}

LoaderBatch DataLoader::next() {
  const int64_t position = position_;
  const int64_t epoch = position / batches_per_epoch_, first = (position % batches_per_epoch_) * options_.batch_size;
  const int64_t rows = batch_rows(position);
  std::vector<Attempt> attempts;
  if (options_.workers == 0) {
    for (int64_t r = 0; r < rows; ++r) attempts.push_back(attempt(epoch, first + r));
  } else {
    if (!pipeline_) start_workers();
    Pipeline& p = *pipeline_;
    std::unique_lock<std::mutex> lock(p.mu);
    p.done_cv.wait(lock, [&] {
      auto it = p.batches.find(position);
      return it != p.batches.end() && it->second.done == rows;
    });
    auto node = p.batches.extract(position);
    attempts = std::move(node.mapped().attempts);
    p.wanted = position + 1;
    lock.unlock();
    p.work_cv.notify_all();
  }
  try {
    return assemble(position, std::move(attempts));
  } catch (...) {
    stop_workers();  // the batch is gone from the pipeline: a later next() starts afresh at position()
    throw;
  }
}

LoaderBatch DataLoader::assemble(int64_t position, std::vector<Attempt> attempts) {
  const int64_t epoch = position / batches_per_epoch_, first = (position % batches_per_epoch_) * options_.batch_size;
  const int64_t rows = int64_t(attempts.size());
  std::vector<Attempt> good;
  auto take = [&](Attempt& a) {
    if (a.fatal) std::rethrow_exception(a.fatal);
    if (a.failed) return record_skip(a);
    good.push_back(std::move(a));
  };
  for (Attempt& a : attempts) take(a);
  // Replacements: the samples after this batch in the rank's epoch order.
  for (int64_t tried = 0; int64_t(good.size()) < rows; ++tried) {
    if (tried >= per_rank_)
      error("DataLoader: no sample of ", source_->name(), " could be read and transformed for batch ", position,
            "; first failure: ", skip_messages_.empty() ? "?" : skip_messages_.front());
    Attempt a = attempt(epoch, (first + rows + tried) % per_rank_);
    take(a);
  }

  LoaderBatch out;
  out.epoch = epoch;
  out.position = position;
  const Example& head = good.front().example;
  for (const auto& [name, tensor] : head) {
    std::vector<Tensor> parts;
    for (const Attempt& a : good) {
      auto it = a.example.find(name);
      if (it == a.example.end())
        error("DataLoader: the transform gave ", a.origin, " no '", name, "' but gave ", good.front().origin, " one");
      if (it->second.shape() != tensor.shape())
        error("DataLoader: the transform gave ", a.origin, " '", name, "' of shape ", it->second.shape(), " but ",
              good.front().origin, " one of shape ", tensor.shape());
      parts.push_back(it->second);
    }
    out.tensors[name] = stack(parts, 0);
  }
  for (const Attempt& a : good) {
    if (a.example.size() != head.size())
      error("DataLoader: the transform gave ", a.origin, " ", a.example.size(), " tensors but ", good.front().origin,
            " ", head.size());
    out.indices.push_back(a.index);
    out.keys.push_back(a.key);
  }
  out.skipped = skipped_;
  ++position_;
  return out;
}

}  // namespace fm::data

// DataLoader: batches independent of worker count and prefetch, exact resume
// by set_position, ranks that split an epoch, corrupt samples skipped in the
// documented order (checked against a naive model of it), clean shutdown.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <numeric>
#include <set>
#include <thread>

#include "fm/data/loader.h"
#include "fm/error.h"
#include "fm/fm.h"
#include "helpers.h"

using namespace fm;
using namespace fm::data;
using fm::test::expect_error;

namespace {

// Samples 0..n-1; read() throws fm::Error for indices in `broken`.
class CountingSource final : public ImageTextSource {
 public:
  explicit CountingSource(int64_t n, std::set<int64_t> broken = {}) : n_(n), broken_(std::move(broken)) {}
  int64_t size() const override { return n_; }
  std::string name() const override { return "counting"; }
  ImageTextSample read(int64_t index) const override {
    if (broken_.count(index)) error("counting: sample ", index, " is unreadable");
    ImageTextSample s;
    s.key = "k" + std::to_string(index);
    s.origin = "counting:" + std::to_string(index);
    s.label = index;
    s.caption = "sample " + std::to_string(index);
    return s;
  }

 private:
  int64_t n_;
  std::set<int64_t> broken_;
};

// The index, the seed, and noise drawn from a local Generator seeded by it
// (never the default generator: this runs on worker threads).
Example transform(const ImageTextSample& s, uint64_t seed) {
  Generator gen(seed);
  return {{"index", fm::tensor(std::vector<int64_t>{s.label}, {1})},
          {"seed", fm::tensor(std::vector<int64_t>{int64_t(seed >> 1)}, {1})},
          {"noise", fm::randn({2, 3}, DType::f32, &gen)}};
}

std::shared_ptr<const ImageTextSource> counting(int64_t n, std::set<int64_t> broken = {}) {
  return std::make_shared<CountingSource>(n, std::move(broken));
}

LoaderOptions opts(int64_t batch, int workers, int prefetch, uint64_t seed = 5) {
  LoaderOptions o;
  o.batch_size = batch;
  o.workers = workers;
  o.prefetch = prefetch;
  o.seed = seed;
  return o;
}

// Every tensor of every batch, as bits, plus the indices.
std::vector<std::vector<double>> draw(DataLoader& loader, int batches) {
  std::vector<std::vector<double>> out;
  for (int b = 0; b < batches; ++b) {
    LoaderBatch batch = loader.next();
    std::vector<double> flat;
    for (const auto& [name, t] : batch.tensors) {
      const std::vector<double> v = t.to_vector<double>();
      flat.insert(flat.end(), v.begin(), v.end());
    }
    for (int64_t i : batch.indices) flat.push_back(double(i));
    flat.push_back(double(batch.epoch));
    out.push_back(flat);
  }
  return out;
}

TEST(DataLoader, SameBatchesWhateverTheWorkersAndPrefetch) {
  // 50 samples, batches of 8: 6 batches per epoch (2 dropped); 15 batches span 3 epochs.
  DataLoader reference(counting(50), transform, opts(8, 0, 1));
  EXPECT_EQ(reference.batches_per_epoch(), 6);
  const auto expected = draw(reference, 15);
  for (int workers : {1, 3}) {
    for (int prefetch : {1, 4}) {
      SCOPED_TRACE("workers " + std::to_string(workers) + " prefetch " + std::to_string(prefetch));
      DataLoader loader(counting(50), transform, opts(8, workers, prefetch));
      EXPECT_EQ(draw(loader, 15), expected);
    }
  }
  // The shapes: [B, ...].
  DataLoader loader(counting(50), transform, opts(8, 2, 2));
  const LoaderBatch b = loader.next();
  EXPECT_EQ(b.tensors.at("noise").shape(), Shape({8, 2, 3}));
  EXPECT_EQ(b.tensors.at("index").shape(), Shape({8, 1}));
  EXPECT_EQ(b.keys[0], "k" + std::to_string(b.indices[0]));
}

TEST(DataLoader, EpochsArePermutationsFromSeedAndEpoch) {
  LoaderOptions o = opts(7, 2, 3);
  o.drop_last = false;  // 30 samples: batches of 7, 7, 7, 7, 2
  DataLoader loader(counting(30), transform, o);
  EXPECT_EQ(loader.batches_per_epoch(), 5);
  std::vector<std::vector<int64_t>> epochs(3);
  for (int b = 0; b < 15; ++b) {
    const LoaderBatch batch = loader.next();
    EXPECT_EQ(batch.epoch, b / 5);
    EXPECT_EQ(int64_t(batch.indices.size()), b % 5 == 4 ? 2 : 7);
    EXPECT_EQ(batch.tensors.at("index").to_vector<int64_t>(), batch.indices);
    for (int64_t i : batch.indices) epochs[size_t(b / 5)].push_back(i);
  }
  std::vector<int64_t> all(30);
  std::iota(all.begin(), all.end(), 0);
  for (const auto& e : epochs) {
    std::vector<int64_t> sorted = e;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, all);  // every sample once per epoch
  }
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[0], all);  // shuffled
  // Another seed, another order; no shuffle, the identity.
  LoaderOptions other = o;
  other.seed = 6;
  DataLoader reseeded(counting(30), transform, other);
  EXPECT_NE(reseeded.next().indices, std::vector<int64_t>(epochs[0].begin(), epochs[0].begin() + 7));
  other.shuffle = false;
  DataLoader ordered(counting(30), transform, other);
  EXPECT_EQ(ordered.next().indices, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(DataLoader, SampleSeedsDependOnSeedEpochAndIndexOnly) {
  DataLoader a(counting(20), transform, opts(4, 0, 1));
  LoaderOptions o = opts(5, 3, 2);
  o.rank = 1;
  o.world_size = 2;
  DataLoader b(counting(20), transform, o);  // other batch size, rank and workers
  EXPECT_EQ(a.sample_seed(3, 11), b.sample_seed(3, 11));
  EXPECT_NE(a.sample_seed(3, 11), a.sample_seed(4, 11));
  EXPECT_NE(a.sample_seed(3, 11), a.sample_seed(3, 12));
  DataLoader c(counting(20), transform, opts(4, 0, 1, 99));
  EXPECT_NE(a.sample_seed(3, 11), c.sample_seed(3, 11));
  // The batches carry those seeds.
  const LoaderBatch batch = a.next();
  const auto seeds = batch.tensors.at("seed").to_vector<int64_t>();
  for (size_t r = 0; r < batch.indices.size(); ++r)
    EXPECT_EQ(seeds[r], int64_t(a.sample_seed(0, batch.indices[r]) >> 1));
}

TEST(DataLoader, SetPositionResumesTheSameStream) {
  DataLoader straight(counting(40), transform, opts(6, 2, 3));
  const auto expected = draw(straight, 14);  // 6 batches per epoch: crosses two epoch ends
  for (int64_t start : {0, 3, 6, 11}) {
    for (int workers : {0, 2}) {
      DataLoader resumed(counting(40), transform, opts(6, workers, 3));
      resumed.set_position(start);
      EXPECT_EQ(resumed.position(), start);
      const auto got = draw(resumed, int(14 - start));
      EXPECT_EQ(got, std::vector<std::vector<double>>(expected.begin() + start, expected.end())) << "start " << start;
    }
  }
  // Jumping back while workers have read ahead.
  DataLoader loader(counting(40), transform, opts(6, 3, 4));
  draw(loader, 5);
  loader.set_position(2);
  EXPECT_EQ(draw(loader, 3), std::vector<std::vector<double>>(expected.begin() + 2, expected.begin() + 5));
  EXPECT_EQ(loader.position(), 5);
}

TEST(DataLoader, RanksSplitAnEpoch) {
  // 48 samples, world 2, batches of 6: 4 batches per rank; together they hold
  // what world 1 holds in its 8 batches, and share nothing.
  DataLoader whole(counting(48), transform, opts(6, 1, 2));
  std::multiset<int64_t> single;
  for (int b = 0; b < 8; ++b)
    for (int64_t i : whole.next().indices) single.insert(i);
  std::multiset<int64_t> both;
  std::set<int64_t> seen[2];
  for (int rank : {0, 1}) {
    LoaderOptions o = opts(6, 2, 2);
    o.rank = rank;
    o.world_size = 2;
    DataLoader loader(counting(48), transform, o);
    EXPECT_EQ(loader.batches_per_epoch(), 4);
    for (int b = 0; b < 4; ++b)
      for (int64_t i : loader.next().indices) both.insert(i), seen[rank].insert(i);
    EXPECT_EQ(loader.next().epoch, 1);
  }
  EXPECT_EQ(both, single);
  for (int64_t i : seen[0]) EXPECT_EQ(seen[1].count(i), 0u) << i;

  // 5 samples over 2 ranks: padded to 6 as DistributedSampler, 3 each.
  LoaderOptions o = opts(3, 0, 1);
  o.world_size = 2;
  std::multiset<int64_t> padded;
  for (int rank : {0, 1}) {
    o.rank = rank;
    DataLoader loader(counting(5), transform, o);
    for (int64_t i : loader.next().indices) padded.insert(i);
  }
  EXPECT_EQ(padded.size(), 6u);
  EXPECT_EQ(std::set<int64_t>(padded.begin(), padded.end()), (std::set<int64_t>{0, 1, 2, 3, 4}));
}

// The documented rule, written naively: batch k takes the first B samples of
// [kB, kB + B), then kB + B, kB + B + 1, ... (wrapping) that are not broken.
std::vector<int64_t> naive_batch(const DataLoader& loader, int64_t epoch, int64_t k, int64_t B,
                                 const std::set<int64_t>& broken, int64_t* failures) {
  std::vector<int64_t> out;
  const int64_t n = loader.samples_per_rank();
  for (int64_t j = k * B; int64_t(out.size()) < B; ++j) {
    const int64_t index = loader.sample_index(epoch, j % n);
    if (broken.count(index)) ++*failures;
    else out.push_back(index);
  }
  return out;
}

TEST(DataLoader, CorruptSamplesAreSkippedCountedAndNamed) {
  const std::set<int64_t> broken = {3, 4, 10, 17, 18, 19, 25};
  // The transform also rejects sample 30 (as a decoder rejects a corrupt image).
  auto picky = [](const ImageTextSample& s, uint64_t seed) {
    if (s.label == 30) error("decode: not a PNG");
    return transform(s, seed);
  };
  std::set<int64_t> bad = broken;
  bad.insert(30);
  std::vector<std::vector<double>> first;
  for (int workers : {0, 3}) {
    SCOPED_TRACE("workers " + std::to_string(workers));
    DataLoader loader(counting(36, broken), picky, opts(5, workers, 2));
    int64_t failures = 0;
    std::vector<std::vector<double>> all;
    for (int b = 0; b < 14; ++b) {  // 7 batches per epoch: two epochs
      const LoaderBatch batch = loader.next();
      EXPECT_EQ(batch.indices, naive_batch(loader, b / 7, b % 7, 5, bad, &failures)) << "batch " << b;
      EXPECT_EQ(batch.skipped, failures);
      EXPECT_EQ(batch.tensors.at("index").to_vector<int64_t>(), batch.indices);
      all.push_back(batch.tensors.at("noise").to_vector<double>());
    }
    EXPECT_EQ(loader.skipped(), failures);
    EXPECT_GE(failures, 16);  // each bad sample at least twice (once per epoch)
    const auto messages = loader.skip_messages();
    ASSERT_FALSE(messages.empty());
    bool named_read = false, named_transform = false;
    for (const std::string& m : messages) {
      named_read |= m.find("counting: sample") != std::string::npos && m.find("is unreadable") != std::string::npos;
      named_transform |= m == "counting:30: decode: not a PNG";
    }
    EXPECT_TRUE(named_read);
    EXPECT_TRUE(named_transform);
    if (first.empty()) first = all;
    else EXPECT_EQ(all, first);
  }
}

TEST(DataLoader, NothingReadableIsAnError) {
  std::set<int64_t> all;
  for (int64_t i = 0; i < 10; ++i) all.insert(i);
  DataLoader loader(counting(10, all), transform, opts(2, 2, 2));
  expect_error([&] { loader.next(); }, "first failure: counting[");
  expect_error([&] { loader.next(); }, "no sample of counting");  // still the same batch, workers restarted
}

TEST(DataLoader, OtherExceptionsPropagate) {
  auto throwing = [](const ImageTextSample& s, uint64_t seed) -> Example {
    if (s.label == 7) throw std::runtime_error("bug in transform");
    return transform(s, seed);
  };
  LoaderOptions o = opts(4, 2, 2);
  o.shuffle = false;
  DataLoader loader(counting(12, {}), throwing, o);
  EXPECT_EQ(loader.next().indices, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_THROW(loader.next(), std::runtime_error);
  EXPECT_EQ(loader.position(), 1);
  EXPECT_THROW(loader.next(), std::runtime_error);
  loader.set_position(2);
  EXPECT_EQ(loader.next().indices, (std::vector<int64_t>{8, 9, 10, 11}));
}

TEST(DataLoader, TransformsThatDisagreeAreErrorsNamingTheSample) {
  auto ragged = [](const ImageTextSample& s, uint64_t) -> Example {
    return {{"x", fm::zeros({s.label == 2 ? 3 : 2})}};
  };
  LoaderOptions o = opts(4, 0, 1);
  o.shuffle = false;
  DataLoader loader(counting(8), ragged, o);
  expect_error([&] { loader.next(); }, "counting:2 'x' of shape [3]");
}

TEST(DataLoader, OptionErrors) {
  expect_error([] { DataLoader(counting(5), transform, opts(8, 0, 1)); }, "fewer than batch_size 8");
  expect_error([] { DataLoader(counting(5), transform, opts(0, 0, 1)); }, "batch_size 0");
  LoaderOptions o = opts(1, 0, 1);
  o.rank = 2;
  o.world_size = 2;
  expect_error([&] { DataLoader(counting(5), transform, o); }, "rank 2");
  expect_error([] { DataLoader(nullptr, transform, opts(1, 0, 1)); }, "no source");
}

TEST(DataLoader, DestructionDoesNotHangWhileWorkersWait) {
  std::atomic<int> calls{0};
  auto slow = [&](const ImageTextSample& s, uint64_t seed) {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return transform(s, seed);
  };
  auto run = std::async(std::launch::async, [&] {
    {
      DataLoader idle(counting(100), slow, opts(4, 3, 1));  // never started
    }
    {
      DataLoader full(counting(100), slow, opts(4, 3, 1));
      full.next();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // workers fill the queue, then wait
      // Bounded read-ahead: prefetch 1 means batch 0 (taken) and batch 1, no more.
      EXPECT_LE(calls.load(), 8);
      EXPECT_GE(calls.load(), 4);
    }
    {
      DataLoader busy(counting(100), slow, opts(4, 4, 8));
      busy.next();  // destroyed while workers are inside the transform
    }
  });
  if (run.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
    ADD_FAILURE() << "DataLoader destruction hangs";
    std::_Exit(1);  // the hung threads would block the test binary's exit
  }
  run.get();
}

}  // namespace

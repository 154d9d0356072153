// fm::audio::ResidualVQ against audiocraft's semantics, written out in plain
// torch by tests/fixtures/make_rvq_fixtures.py: codes and outputs for given
// codebooks (all codebooks and n_q = 2), and two training steps of the EMA
// (k-means and restarts off, so they are deterministic): codes, outputs,
// commitment losses, d loss / d x and every buffer, element-wise within
// rtol 1e-5 and atol 1e-5 (codes exactly). The random parts are tested by
// their properties: k-means ends at a fixed point of Lloyd's step no worse
// than its starting sample, a dead code restarts on a frame of the batch
// (decided on the statistics before the EMA step, as audiocraft) and stays
// there (unlike audiocraft, see rvq.h), and RVQ learns clustered data from
// random codebooks and from k-means: the error falls with training and with
// each further codebook.
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "fm/audio/rvq.h"
#include "parity.h"

using namespace fm;
using fm::audio::ResidualVQ;
using fm::audio::RVQOptions;
using fm::test::all_close;

namespace {

constexpr double kRtol = 1e-5, kAtol = 1e-5;
using Fixture = fm::test::ParityFixture;

RVQOptions fixture_options(const Fixture& f) {
  RVQOptions o;
  o.dim = f.option("dim");
  o.n_codebooks = f.option("n_codebooks");
  o.codebook_size = f.option("codebook_size");
  o.kmeans_init = false;
  o.threshold_ema_dead_code = 0;
  return o;
}

std::vector<int64_t> ints(const Tensor& t) { return t.to(DType::i64).to_vector<int64_t>(); }

void expect_close(const std::string& what, const Tensor& actual, const Tensor& expected) {
  ASSERT_TRUE(actual.defined()) << what;
  EXPECT_TRUE(all_close(actual, expected, kRtol, kAtol)) << what;
}

void expect_codes(const std::string& what, const Tensor& actual, const Tensor& expected) {
  ASSERT_EQ(actual.dtype(), DType::i64) << what;
  EXPECT_EQ(actual.shape(), expected.shape()) << what;
  EXPECT_EQ(ints(actual), ints(expected)) << what;
}

// Mean squared error per element.
double mse(const Tensor& a, const Tensor& b) { return mse_loss(a, b).item(); }

}  // namespace

TEST(RVQ, BuffersCarryAudiocraftsNames) {
  RVQOptions o;
  o.dim = 6, o.n_codebooks = 3, o.codebook_size = 5;
  ResidualVQ rvq(o);
  EXPECT_TRUE(rvq.named_parameters().empty());
  std::set<std::string> names;
  for (const auto& b : rvq.named_buffers()) {
    names.insert(b.name);
    const std::string leaf = b.name.substr(b.name.rfind('.') + 1);
    const Shape expected = leaf == "inited"         ? Shape{1}
                           : leaf == "cluster_size" ? Shape{5}
                                                    : Shape{5, 6};
    EXPECT_EQ(b.tensor.shape(), expected) << b.name;
  }
  std::set<std::string> expected;
  for (int i = 0; i < 3; ++i)
    for (const char* n : {"inited", "cluster_size", "embed", "embed_avg"})
      expected.insert("layers." + std::to_string(i) + "._codebook." + n);
  EXPECT_EQ(names, expected);
  // k-means pending: zeros everywhere and inited 0; without k-means, a
  // kaiming-uniform embed and inited 1.
  EXPECT_EQ((*rvq.layers)[0].codebook->inited.item(), 0.0);
  o.kmeans_init = false;
  ResidualVQ plain(o);
  const auto& book = *(*plain.layers)[1].codebook;
  EXPECT_EQ(book.inited.item(), 1.0);
  const double bound = std::sqrt(6.0 / 6);
  EXPECT_GT(max(abs(book.embed)).item(), 0.0);
  EXPECT_LE(max(abs(book.embed)).item(), bound);
  EXPECT_TRUE(all_close(book.embed_avg, book.embed, 0, 0));
}

TEST(RVQ, RejectsBadShapesAndCodebookCounts) {
  RVQOptions o;
  o.dim = 4, o.n_codebooks = 2, o.codebook_size = 3, o.kmeans_init = false;
  ResidualVQ rvq(o);
  const Tensor x = randn({2, 4, 5});
  fm::test::expect_error([&] { rvq.forward(x, 3); }, "n_q");
  fm::test::expect_error([&] { rvq.encode(x, -1); }, "n_q");
  fm::test::expect_error([&] { rvq.forward(randn({2, 5, 4})); }, "[B, 4, T]");
  fm::test::expect_error([&] { rvq.decode(zeros({2, 3, 5}, DType::i64)); }, "K <= 2");
  o.kmeans_iters = 0;
  o.kmeans_init = true;
  fm::test::expect_error([&] { ResidualVQ bad(o); }, "kmeans_iters");
}

TEST(RVQParity, CodesAndOutputsForGivenCodebooks) {
  const Fixture f("rvq_eval.safetensors");
  ResidualVQ rvq(fixture_options(f));
  rvq.load_state_dict(f.params());
  rvq.eval();
  const Tensor x = f.get("input.x");

  const audio::RVQOutput out = rvq.forward(x);
  expect_codes("forward codes", out.codes, f.get("codes"));
  expect_close("forward quantized", out.quantized, f.get("quantized"));
  EXPECT_EQ(out.commitment_loss.item(), 0.0);
  EXPECT_EQ(out.layer_losses.shape(), Shape{4});
  expect_codes("encode", rvq.encode(x), f.get("codes"));
  expect_close("decode", rvq.decode(f.get("codes")), f.get("quantized"));

  // Fewer codebooks at inference.
  expect_codes("forward codes, n_q 2", rvq.forward(x, 2).codes, f.get("codes_nq2"));
  expect_close("forward quantized, n_q 2", rvq.forward(x, 2).quantized, f.get("quantized_nq2"));
  expect_codes("encode, n_q 2", rvq.encode(x, 2), f.get("codes_nq2"));
  expect_close("decode, 2 codebooks", rvq.decode(f.get("codes_nq2")), f.get("quantized_nq2"));

  // Eval mode learns nothing.
  for (const auto& b : rvq.named_buffers()) expect_close("unchanged " + b.name, b.tensor, f.get("param." + b.name));
}

TEST(RVQParity, TwoTrainingStepsOfTheEMA) {
  const Fixture f("rvq_train.safetensors");
  RVQOptions o = fixture_options(f);
  o.decay = std::stod(f.meta("decay"));
  o.epsilon = std::stod(f.meta("epsilon"));
  o.commitment_weight = std::stod(f.meta("commitment_weight"));
  ResidualVQ rvq(o);
  rvq.load_state_dict(f.params());
  rvq.train();
  for (int step = 1; step <= 2; ++step) {
    const std::string s = std::to_string(step), at = "step" + s + ".";
    const int64_t n_q = step == 1 ? 0 : f.option("step2_n_q");
    const Tensor x = f.input_leaf("x" + s);
    const audio::RVQOutput out = rvq.forward(x, n_q);
    (sum(out.quantized * f.get("output_grad.w" + s)) + out.commitment_loss).backward();

    expect_codes(at + "codes", out.codes, f.get(at + "codes"));
    expect_close(at + "quantized", out.quantized, f.get(at + "quantized"));
    expect_close(at + "commitment_loss", out.commitment_loss, f.get(at + "commitment_loss"));
    expect_close(at + "layer_losses", out.layer_losses, f.get(at + "layer_losses"));
    expect_close(at + "x_grad", x.grad(), f.get(at + "x_grad"));
    for (const auto& b : rvq.named_buffers()) expect_close(at + b.name, b.tensor, f.get(at + "state." + b.name));
  }
}

// k-means on four separated clusters: the codebook after a first forward (in
// eval mode: no EMA step) is a fixed point of Lloyd's step, its counts are
// the assignment's, and its distortion is no worse than the starting sample.
TEST(RVQ, KMeansInitEndsAtAFixedPointOfLloyd) {
  manual_seed(11);
  const Tensor centres = tensor(std::vector<float>{5, 5, 0, 0, -5, 5, 0, 0, 5, -5, 0, 0, -5, -5, 0, 0}, {4, 4});
  const Tensor which = randint(0, 4, {256});
  const Tensor x = index_select(centres, 0, which) + randn({256, 4});

  RVQOptions o;
  o.dim = 4, o.codebook_size = 8, o.kmeans_iters = 50;
  Generator gen(99);
  audio::EuclideanCodebook book(o, &gen);
  book.eval();
  const audio::EuclideanCodebook::Output out = book.forward(x);
  EXPECT_EQ(book.inited.item(), 1.0);
  EXPECT_TRUE(all_close(book.embed_avg, book.embed, 0, 0));
  expect_codes("forward codes", out.codes, book.encode(x));

  const std::vector<int64_t> codes = ints(book.encode(x));
  const std::vector<float> pts = x.to_vector<float>(), means = book.embed.to_vector<float>();
  const std::vector<float> sizes = book.cluster_size.to_vector<float>();
  for (int64_t k = 0; k < 8; ++k) {
    std::vector<double> acc(4, 0.0);
    int64_t n = 0;
    for (size_t i = 0; i < codes.size(); ++i)
      if (codes[i] == k) {
        ++n;
        for (int d = 0; d < 4; ++d) acc[size_t(d)] += pts[i * 4 + size_t(d)];
      }
    EXPECT_EQ(sizes[size_t(k)], float(n)) << "cluster_size of code " << k;
    if (n == 0) continue;
    for (int d = 0; d < 4; ++d)
      EXPECT_NEAR(means[size_t(k * 4 + d)], acc[size_t(d)] / double(n), 1e-5) << "code " << k << " dim " << d;
  }

  Generator again(99);  // the codebook drew its starting points from this stream
  const Tensor start = audio::sample_vectors(x, 8, &again);
  auto distortion = [&](const Tensor& m) {
    audio::EuclideanCodebook probe(o);
    probe.embed.copy_(m);
    return mse(probe.decode(probe.encode(x)), x);
  };
  EXPECT_LE(distortion(book.embed), distortion(start) + 1e-6);
  EXPECT_LT(distortion(book.embed), 2.0);  // the noise alone: 1 per element

  // A second eval forward leaves the initialised codebook alone.
  const Tensor before = book.embed.clone();
  book.forward(x);
  EXPECT_TRUE(all_close(book.embed, before, 0, 0));
}

// Fewer distinct points than clusters: sampling draws with replacement, the
// duplicates' clusters stay empty and keep their old centroid.
TEST(RVQ, KMeansEmptyClustersKeepTheirCentroid) {
  const Tensor x = tensor(std::vector<float>{0, 0, 1, 0, 0, 1}, {3, 2});
  Generator gen(5);
  const audio::KMeansResult r = audio::kmeans(x, 6, 5, &gen);
  const std::vector<int64_t> counts = ints(r.counts);
  int64_t total = 0, empty = 0;
  for (int64_t c : counts) total += c, empty += c == 0;
  EXPECT_EQ(total, 3);
  EXPECT_GE(empty, 3);
  const std::vector<float> m = r.means.to_vector<float>(), p = x.to_vector<float>();
  for (size_t k = 0; k < 6; ++k) {
    bool is_point = false;
    for (size_t i = 0; i < 3; ++i) is_point |= m[2 * k] == p[2 * i] && m[2 * k + 1] == p[2 * i + 1];
    EXPECT_TRUE(is_point) << "mean " << k << " is not one of the points";
  }
}

// Codes 0 and 1 sit on the data; code 2 (EMA size 2.01) and code 3 (0.5)
// are far away and unused. Step 1 restarts code 3 only (2.01 is not below
// the threshold before the EMA step, as audiocraft decides), on a frame of
// the batch, and the restart holds: step 2 assigns frames to code 3 and
// restarts code 2, whose size has fallen to 1.99.
TEST(RVQ, DeadCodesRestartOnFramesOfTheBatch) {
  RVQOptions o;
  o.dim = 2, o.codebook_size = 4, o.kmeans_init = false, o.threshold_ema_dead_code = 2.0;
  Generator gen(3);
  audio::EuclideanCodebook book(o, &gen);
  book.embed.copy_(tensor(std::vector<float>{1, 1, -1, -1, 100, 100, -100, 100}, {4, 2}));
  book.cluster_size.copy_(tensor(std::vector<float>{10, 10, 2.01f, 0.5f}));
  book.embed_avg.copy_(book.embed * book.cluster_size.unsqueeze(1));
  manual_seed(4);
  const Tensor centres = tensor(std::vector<float>{1, 1, -1, -1}, {2, 2});
  const Tensor x = index_select(centres, 0, randint(0, 2, {32})) + randn({32, 2}) * 0.3;
  const std::vector<float> p = x.to_vector<float>();
  auto is_frame = [&](int64_t k) {
    const std::vector<float> e = book.embed.to_vector<float>();
    for (size_t i = 0; i < 32; ++i)
      if (e[size_t(2 * k)] == p[2 * i] && e[size_t(2 * k + 1)] == p[2 * i + 1]) return true;
    return false;
  };

  book.train();
  const std::vector<int64_t> first = ints(book.forward(x).codes);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()), (std::set<int64_t>{0, 1}));
  EXPECT_TRUE(is_frame(3)) << "code 3 was not restarted: " << book.embed;
  EXPECT_FALSE(is_frame(2)) << "code 2 restarted before its size fell below the threshold";
  EXPECT_GT(book.embed.select(0, 2).sum().item(), 100.0);
  EXPECT_LT(book.cluster_size.to_vector<float>()[2], 2.0f);

  const std::vector<int64_t> second = ints(book.forward(x).codes);
  EXPECT_TRUE(std::set<int64_t>(second.begin(), second.end()).count(3)) << "the restarted code 3 got no frames";
  EXPECT_TRUE(is_frame(2)) << "code 2 was not restarted: " << book.embed;

  // Threshold 0: no restarts.
  o.threshold_ema_dead_code = 0;
  audio::EuclideanCodebook never(o, &gen);
  never.embed.copy_(tensor(std::vector<float>{1, 1, -1, -1, 100, 100, -100, 100}, {4, 2}));
  never.cluster_size.copy_(tensor(std::vector<float>{10, 10, 2.01f, 0.5f}));
  never.embed_avg.copy_(never.embed * never.cluster_size.unsqueeze(1));
  never.train();
  never.forward(x);
  EXPECT_LT(never.embed.to_vector<float>()[6], -50.0f);  // code 3 stays far away
}

// Frames from a mixture of 32 clusters in 8 dims; 4 codebooks of 16
// (decay 0.99, restarts below 2) trained for 300 steps on fresh batches.
// Reconstruction errors of held-out frames with 1..4 codebooks: before
// training, after the first step, after the last; and the mean commitment
// loss of the first and last steps.
struct Learning {
  std::vector<double> before, after_first, trained;
  double first_commitment = 0, last_commitment = 0, mean_square = 0;
  int dead_codes = 0;  // EMA cluster size below the threshold at the end
};

Learning learn_clusters(bool kmeans_init) {
  manual_seed(21);
  const int64_t dim = 8, frames = 32, batch = 8;
  const Tensor centres = randn({32, dim}) * 2.0;
  auto draw = [&](int64_t b) {  // [b, dim, frames]
    const Tensor rows = index_select(centres, 0, randint(0, 32, {b * frames})) + randn({b * frames, dim}) * 0.3;
    return rows.view({b, frames, dim}).permute({0, 2, 1}).contiguous();
  };
  RVQOptions o;
  o.dim = dim, o.n_codebooks = 4, o.codebook_size = 16, o.kmeans_init = kmeans_init;
  Generator gen(8);
  ResidualVQ rvq(o, &gen);
  const Tensor held_out = draw(32);
  auto errors = [&] {
    std::vector<double> e;
    for (int64_t n = 1; n <= 4; ++n) e.push_back(mse(rvq.decode(rvq.encode(held_out, n)), held_out));
    return e;
  };
  Learning r;
  r.mean_square = mse(held_out, zeros_like(held_out));
  if (!kmeans_init) r.before = errors();
  rvq.train();
  for (int step = 0; step < 300; ++step) {
    const double c = rvq.forward(draw(batch)).commitment_loss.item();
    if (step == 0) r.first_commitment = c, r.after_first = errors();
    r.last_commitment = c;
  }
  r.trained = errors();
  for (const auto& layer : *rvq.layers)
    for (float size : layer->codebook->cluster_size.to_vector<float>()) r.dead_codes += size < 2.0f;
  std::cout << (kmeans_init ? "k-means init" : "random init") << ": held-out error with 1..4 codebooks";
  if (!kmeans_init) {
    std::cout << " before training:";
    for (double e : r.before) std::cout << " " << e;
    std::cout << ";";
  }
  std::cout << " after step 1:";
  for (double e : r.after_first) std::cout << " " << e;
  std::cout << "; after 300 steps:";
  for (double e : r.trained) std::cout << " " << e;
  std::cout << " (frames' mean square " << r.mean_square << "); commitment " << r.first_commitment << " -> "
            << r.last_commitment << "; dead codes " << r.dead_codes << "\n";
  // The training forward reconstructs as encode and decode do.
  rvq.eval();
  EXPECT_NEAR(mse(rvq.forward(held_out).quantized, held_out), r.trained[3], 1e-5);
  return r;
}

void expect_each_codebook_helps(const std::vector<double>& e) {
  for (size_t n = 1; n < e.size(); ++n) EXPECT_LT(e[n], 0.8 * e[n - 1]) << "codebook " << n + 1 << " adds little";
}

// From random codebooks (kmeans_init false) the EMA and the restarts learn
// the clusters: the error falls to a fraction of the start.
TEST(RVQ, LearnsClusteredFramesFromRandomCodebooks) {
  const Learning r = learn_clusters(false);
  expect_each_codebook_helps(r.trained);
  EXPECT_LT(r.trained[3], 0.25 * r.before[3]);
  EXPECT_LT(r.trained[3], 0.1 * r.mean_square);
  EXPECT_LT(r.last_commitment, 0.5 * r.first_commitment);
  EXPECT_LE(r.dead_codes, 4);
}

// audiocraft's defaults (k-means on the first batch). Its k-means leaves
// embed_avg at the means rather than means * counts, so the first EMA step
// shrinks the codes of large clusters; training recovers from that.
TEST(RVQ, LearnsClusteredFramesFromKMeans) {
  const Learning r = learn_clusters(true);
  expect_each_codebook_helps(r.trained);
  EXPECT_LT(r.trained[3], 0.5 * r.after_first[3]);
  EXPECT_LT(r.trained[3], 0.1 * r.mean_square);
}

// The MPI communicator across real ranks (ctest runs this file under
// mpirun -np 2 and -np 3): every collective against its definition computed
// locally from what each rank contributes (each rank's input is a function of
// its rank, so any rank can compute every other's), all_gather's gradient,
// and the gradient reducer (W ranks on their shards give the gradient of the
// whole batch, whatever the bucket size).
#include <gtest/gtest.h>

#include "fm/autograd.h"
#include "fm/error.h"
#include "fm/dist/communicator.h"
#include "fm/dist/data_parallel.h"
#include "fm/dist/gather.h"
#include "fm/dist/zero.h"
#include "fm/optim/adamw.h"
#include "fm/optim/clip.h"
#include "fm/factory.h"
#include "fm/nn/flat.h"
#include "fm/nn/layers.h"
#include "fm/ops.h"
#include "fm/random.h"
#include "helpers.h"

using namespace fm;
using namespace fm::test;

namespace {

std::shared_ptr<dist::Communicator> comm() { return dist::mpi_world(); }

// Rank r's contribution: fresh random values from a stream seeded by r.
Tensor of_rank(int r, const Shape& shape, DType t = DType::f32) {
  Generator g(1000 + uint64_t(r));
  return randn(shape, TensorOptions(DType::f32), &g).to(t);
}

Tensor param(const nn::Module& m, const std::string& name) {
  for (const auto& p : m.named_parameters())
    if (p.name == name) return p.tensor;
  error("no parameter ", name);
}

struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> a, b;
  Mlp() {
    a = register_module("a", std::make_shared<nn::Linear>(nn::LinearOptions{6, 32}));
    b = register_module("b", std::make_shared<nn::Linear>(nn::LinearOptions{32, 3}));
  }
  Tensor forward(const Tensor& x) const { return b->forward(tanh(a->forward(x))); }
};

}  // namespace

TEST(Mpi, AllReduceSumsAndAverages) {
  auto c = comm();
  const int W = c->world_size(), r = c->rank();
  ASSERT_GT(W, 1) << "run under mpirun -np 2 or more";
  for (DType t : {DType::f32, DType::f64}) {
    Tensor expected = zeros({5, 7}, TensorOptions(t));
    for (int q = 0; q < W; ++q) expected = expected + of_rank(q, {5, 7}, t);
    const Tensor x = of_rank(r, {5, 7}, t);
    c->all_reduce(x, dist::ReduceOp::sum);
    EXPECT_LT(rel_err(x, expected), 1e-6);
    const Tensor y = of_rank(r, {5, 7}, t);
    c->all_reduce(y, dist::ReduceOp::average);
    EXPECT_LT(rel_err(y, expected / double(W)), 1e-6);
  }
  // Integers, and a view inside a bigger buffer (the reducer's buckets).
  const Tensor i = full({4}, double(r + 1), DType::i64);
  c->all_reduce(i, dist::ReduceOp::sum);
  EXPECT_EQ(i.to_vector<int64_t>(), std::vector<int64_t>(4, int64_t(W * (W + 1) / 2)));
  const Tensor buffer = full({10}, double(r), DType::f32);
  c->all_reduce(buffer.narrow(0, 3, 4), dist::ReduceOp::sum);
  const std::vector<float> v = buffer.to_vector<float>();
  for (int k = 0; k < 10; ++k) EXPECT_EQ(v[size_t(k)], k >= 3 && k < 7 ? float(W * (W - 1) / 2) : float(r)) << k;
  EXPECT_THROW(c->all_reduce(full({2}, 1.0, DType::bf16), dist::ReduceOp::sum), Error);
}

TEST(Mpi, BroadcastGatherScatter) {
  auto c = comm();
  const int W = c->world_size(), r = c->rank();
  const int root = W - 1;
  const Tensor x = of_rank(r, {3, 2}, DType::bf16);  // any dtype broadcasts
  c->broadcast(x, root);
  EXPECT_EQ(rel_err(x, of_rank(root, {3, 2}, DType::bf16)), 0.0);
  std::vector<Tensor> parts;
  for (int q = 0; q < W; ++q) parts.push_back(of_rank(q, {2, 3}));
  EXPECT_EQ(rel_err(c->all_gather(of_rank(r, {2, 3})), cat(parts, 0)), 0.0);
  // reduce_scatter: rank q contributes of_rank(q, [W*2, 3]); rank r keeps block r of the sum.
  Tensor total = zeros({W * 2, 3});
  for (int q = 0; q < W; ++q) total = total + of_rank(q, {W * 2, 3});
  const Tensor mine = c->reduce_scatter(of_rank(r, {W * 2, 3}), dist::ReduceOp::average);
  EXPECT_LT(rel_err(mine, total.narrow(0, 2 * r, 2) / double(W)), 1e-6);
  EXPECT_THROW(c->reduce_scatter(zeros({W * 2 + 1, 3}), dist::ReduceOp::sum), Error);
  c->barrier();
}

TEST(Mpi, AllGatherWithGradSumsEveryRanksGradient) {
  auto c = comm();
  const int W = c->world_size(), r = c->rank();
  // Every rank's loss is sum(gathered * w_q), w_q its own weights; the
  // gradient reaching rank r's features is block r of sum over q of w_q.
  const Tensor x = of_rank(r, {2, 4}).requires_grad_();
  const Tensor w = of_rank(100 + r, {W * 2, 4});
  sum(dist::all_gather_with_grad(*c, x) * w).backward();
  Tensor expected = zeros({W * 2, 4});
  for (int q = 0; q < W; ++q) expected = expected + of_rank(100 + q, {W * 2, 4});
  EXPECT_LT(rel_err(x.grad(), expected.narrow(0, 2 * r, 2)), 1e-6);
}

TEST(Mpi, ReducerGivesTheWholeBatchGradient) {
  auto c = comm();
  const int W = c->world_size(), r = c->rank();
  const int64_t B = 3;
  Tensor batch = of_rank(7, {W * B, 6});  // the same on every rank
  for (int64_t bucket : {int64_t(64), int64_t(1) << 20}) {
    // Reference: one model, the whole batch, mean loss.
    manual_seed(11);
    Mlp whole;
    sum(whole.forward(batch).pow(2)).backward();  // sum over rows: scaled below
    // Data parallel: rank r's rows, mean over its rows, gradients averaged.
    manual_seed(11);
    Mlp m;
    const nn::FlatParameters flat = nn::flatten_parameters(m);
    dist::GradientReducer reducer(c, flat, bucket);
    reducer.set_sync(true);
    (sum(m.forward(batch.narrow(0, r * B, B)).pow(2)) / double(B)).backward();
    EXPECT_GT(reducer.launched_in_backward(), 0);  // overlapped with backward
    reducer.finish();
    for (const char* name : {"a.weight", "a.bias", "b.weight", "b.bias"}) {
      const Tensor mine = param(m, name).grad();
      const Tensor ref = param(whole, name).grad() / double(W * B);
      EXPECT_LT(rel_err(mine, ref), 1e-5) << name << " bucket " << bucket;
    }
  }
}

TEST(Mpi, Zero1EqualsAdamWOnTheWholeBatchWithAShardOfItsState) {
  auto c = comm();
  const int W = c->world_size(), r = c->rank();
  const int64_t B = 4;
  const Tensor batch = of_rank(9, {W * B, 6});
  optim::AdamWOptions o;
  o.lr = 1e-2, o.weight_decay = 0.1;
  manual_seed(5);
  Mlp ref;
  nn::flatten_parameters(ref);
  optim::AdamW adamw(ref, o);
  manual_seed(5);
  Mlp m;
  const nn::FlatParameters flat = nn::flatten_parameters(m);
  dist::Zero1 zero(c, flat, o);
  for (int step = 0; step < 3; ++step) {
    adamw.zero_grad();
    (sum(ref.forward(batch).pow(2)) / double(W * B)).backward();
    const double ref_norm = optim::clip_grad_norm(ref.parameters(), 0.5);
    adamw.step();
    zero.zero_grad();
    (sum(m.forward(batch.narrow(0, r * B, B)).pow(2)) / double(B)).backward();
    EXPECT_NEAR(zero.step(0.5), ref_norm, 1e-5 * ref_norm);
  }
  for (const char* name : {"a.weight", "a.bias", "b.weight", "b.bias"})
    EXPECT_LT(rel_err(param(m, name), param(ref, name)), 1e-5) << name;
  // The state: about 1/W of AdamW's each, and gathered it is AdamW's.
  int64_t total = 0;
  for (const auto& p : m.named_parameters()) total += 2 * p.tensor.numel();
  EXPECT_LE(zero.state_elements(), total / W + 2 * 16 * 4);  // alignment padding aside
  const auto mine = zero.state_dict(), theirs = adamw.state_dict();
  ASSERT_EQ(mine.size(), theirs.size());
  for (const auto& [k, t] : theirs) EXPECT_LT(rel_err(mine.at(k), t), 1e-5) << k;
  // Loaded back on a fresh optimizer, the next step is the same.
  dist::Zero1 again(c, flat, o);
  again.load_state_dict(theirs);
  EXPECT_EQ(again.state_dict().at("step").item<int64_t>(), 3);
  EXPECT_LT(rel_err(again.state_dict().at("exp_avg.b.weight"), theirs.at("exp_avg.b.weight")), 1e-6);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dist::mpi_world();  // MPI_Init before any test
  // Only rank 0 prints results; every rank runs every test.
  if (dist::mpi_world()->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  return RUN_ALL_TESTS();
}

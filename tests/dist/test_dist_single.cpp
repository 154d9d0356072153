// fm::dist in one process: launcher detection from fake environments, the
// single-process communicator, and the gradient reducer's buckets and hooks
// (which collectives the hooks launch, and when, does not need a peer).
#include <gtest/gtest.h>

#include <map>

#include "fm/autograd.h"
#include "fm/dist/communicator.h"
#include "fm/dist/data_parallel.h"
#include "fm/dist/gather.h"
#include "fm/dist/launch.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/nn/flat.h"
#include "fm/nn/layers.h"
#include "fm/ops.h"
#include "helpers.h"

using namespace fm;
using namespace fm::test;

namespace {

dist::Launch launch_with(const std::map<std::string, std::string>& env) {
  return dist::detect_launch([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

// Three linear layers in a row: six parameters.
struct Mlp : nn::Module {
  std::shared_ptr<nn::Linear> a, b, c;
  Mlp() {
    a = register_module("a", std::make_shared<nn::Linear>(nn::LinearOptions{8, 16}));
    b = register_module("b", std::make_shared<nn::Linear>(nn::LinearOptions{16, 16}));
    c = register_module("c", std::make_shared<nn::Linear>(nn::LinearOptions{16, 4}));
  }
  Tensor forward(const Tensor& x) const { return c->forward(relu(b->forward(relu(a->forward(x))))); }
};

}  // namespace

TEST(Launch, ReadsEachLauncherAndPrefersMpi) {
  EXPECT_EQ(launch_with({}).launcher, "none");
  EXPECT_EQ(launch_with({}).world_size, 1);
  auto l = launch_with({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                        {"RANK", "0"}, {"WORLD_SIZE", "2"}});
  EXPECT_EQ(l.launcher, "mpi");
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  l = launch_with({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "5"}});
  EXPECT_EQ(l.launcher, "slurm");
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.local_rank, 5);
  l = launch_with({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}});
  EXPECT_EQ(l.launcher, "torchrun");
  EXPECT_EQ(l.master_addr, "node0");
  EXPECT_EQ(l.master_port, 29500);
  EXPECT_THROW(launch_with({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), Error);  // rank outside the world
  EXPECT_THROW(launch_with({{"RANK", "x"}, {"WORLD_SIZE", "2"}}), Error);
  EXPECT_THROW(launch_with({{"RANK", "0"}, {"WORLD_SIZE", "0"}}), Error);
}

TEST(SingleProcess, CollectivesAreTheIdentity) {
  auto c = dist::single_process();
  EXPECT_EQ(c->world_size(), 1);
  const Tensor x = randn({3, 4});
  const Tensor before = x.clone();
  c->all_reduce(x, dist::ReduceOp::average);
  EXPECT_TRUE(all_close(x, before, 0, 0));
  EXPECT_TRUE(all_close(c->all_gather(x), x, 0, 0));
  EXPECT_TRUE(all_close(c->reduce_scatter(x, dist::ReduceOp::sum), x, 0, 0));
  EXPECT_THROW(c->broadcast(x, 1), Error);
  EXPECT_THROW(c->all_reduce(x.transpose(0, 1), dist::ReduceOp::sum), Error);  // not contiguous
  // all_gather_with_grad in a world of one passes the gradient through.
  const Tensor p = randn({3, 4}).requires_grad_();
  const Tensor w = randn({3, 4});
  sum(dist::all_gather_with_grad(*c, p) * w).backward();
  EXPECT_TRUE(all_close(p.grad(), w, 0, 0));
}

TEST(GradientReducer, BucketsFollowTheSizeAndHooksLaunchThemDuringBackward) {
  manual_seed(3);
  Mlp m;
  const nn::FlatParameters flat = nn::flatten_parameters(m);
  // Weights of 128, 256 and 64 floats, then biases of 16, 16 and 4: 4-byte
  // buckets hold one parameter each (6), 64-byte ones put c.bias (16 bytes)
  // with b.bias (5), and a huge one holds all (1).
  dist::GradientReducer one_each(dist::single_process(), flat, 4);
  EXPECT_EQ(dist::GradientReducer(dist::single_process(), flat, 64).buckets(), 5);
  dist::GradientReducer all(dist::single_process(), flat, int64_t(1) << 30);
  EXPECT_EQ(one_each.buckets(), 6);
  EXPECT_EQ(all.buckets(), 1);
  const Tensor x = randn({5, 8});
  one_each.set_sync(true);
  all.set_sync(true);
  sum(m.forward(x)).backward();
  // Every parameter got its gradient, so every bucket launched inside backward.
  EXPECT_EQ(one_each.launched_in_backward(), 6);
  EXPECT_EQ(all.launched_in_backward(), 1);
  one_each.finish();
  all.finish();
  // An accumulation micro-step launches nothing.
  one_each.set_sync(false);
  sum(m.forward(x)).backward();
  EXPECT_EQ(one_each.launched_in_backward(), 0);
  EXPECT_THROW(one_each.finish(), Error);
  // A parameter without a gradient (c unused) leaves its buckets to finish().
  one_each.set_sync(true);
  sum(m.b->forward(relu(m.a->forward(x)))).backward();
  EXPECT_EQ(one_each.launched_in_backward(), 4);
  one_each.finish();
}

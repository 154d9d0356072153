// The NCCL communicator at world size 1 on cuda:0 (the multi-rank path is
// the MPI tests' with NCCL underneath, which needs GPUs per rank): each
// collective's result, host tensors staged through the device, a gradient
// reducer over device gradients, and all_gather's gradient. Skips without a
// GPU or without NCCL in the build.
#include <gtest/gtest.h>

#include "fm/cuda/cuda.h"
#include "fm/dist/communicator.h"
#include "fm/dist/data_parallel.h"
#include "fm/dist/gather.h"
#include "fm/factory.h"
#include "fm/nn/flat.h"
#include "fm/nn/layers.h"
#include "fm/ops.h"
#include "helpers.h"

using namespace fm;
using namespace fm::test;

namespace {

bool ready() { return dist::nccl_available() && cuda::is_available(); }
const Device kGpu = Device::cuda(0);

}  // namespace

TEST(Nccl, CollectivesAtWorldSizeOne) {
  if (!ready()) GTEST_SKIP() << "needs a GPU and NCCL";
  auto c = dist::nccl_world(0);
  EXPECT_EQ(c->backend(), "nccl");
  EXPECT_EQ(c->world_size(), 1);
  const Tensor host = randn({6, 5});
  const Tensor x = host.to(kGpu);
  c->all_reduce(x, dist::ReduceOp::sum);
  EXPECT_EQ(rel_err(x, host), 0.0);
  c->all_reduce(x, dist::ReduceOp::average);
  EXPECT_EQ(rel_err(x, host), 0.0);
  c->broadcast(x, 0);
  EXPECT_EQ(rel_err(c->all_gather(x), host), 0.0);
  EXPECT_EQ(rel_err(c->reduce_scatter(x, dist::ReduceOp::sum), host), 0.0);
  const Tensor h = host.clone();  // a host tensor goes through the device and back
  c->all_reduce(h, dist::ReduceOp::sum);
  EXPECT_EQ(rel_err(h, host), 0.0);
  EXPECT_THROW(c->broadcast(x, 1), Error);
  c->barrier();
}

TEST(Nccl, ReducerAndGatherGradientOnTheDevice) {
  if (!ready()) GTEST_SKIP() << "needs a GPU and NCCL";
  auto c = dist::nccl_world(0);
  nn::Linear lin(nn::LinearOptions{8, 4});
  lin.to(kGpu);
  const nn::FlatParameters flat = nn::flatten_parameters(lin);
  dist::GradientReducer reducer(c, flat, 64);
  const Tensor x = randn({3, 8}).to(kGpu);
  reducer.set_sync(true);
  sum(lin.forward(x).pow(2)).backward();
  const Tensor before = lin.named_parameters()[0].tensor.grad().to(Device::cpu());
  reducer.finish();
  EXPECT_GT(reducer.launched_in_backward(), 0);
  EXPECT_LT(rel_err(lin.named_parameters()[0].tensor.grad(), before), 1e-6);  // average over one rank
  const Tensor p = randn({2, 3}).to(kGpu).requires_grad_();
  const Tensor w = randn({2, 3}).to(kGpu);
  sum(dist::all_gather_with_grad(*c, p) * w).backward();
  EXPECT_LT(rel_err(p.grad(), w), 1e-6);
}

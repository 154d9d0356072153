// The CUDA backend against the CPU reference. Registration is checked
// everywhere; the comparisons need a GPU and skip without one.
#include "fm/cuda/cuda.h"
#include "fm/kernels/attention.h"
#include "fm/kernels/conv.h"
#include "fm/kernels/core.h"
#include "fm/kernels/index.h"
#include "fm/kernels/norm.h"
#include "fm/kernels/optim.h"
#include "helpers.h"

using namespace fm;
using fm::test::all_close;

namespace {

bool have_gpu() { return cuda::is_available(); }

Tensor on_gpu(const Tensor& t) { return t.to(Device::cuda(0)); }

}  // namespace

// Every kernel the CPU backend has, the CUDA backend has too: the slots
// come from the kernel table itself, so a new CPU kernel without a CUDA one
// fails here without anyone updating a list.
TEST(CudaBackend, RegistersEveryKernelAndTheAllocatorAtLoad) {
  int cpu_slots = 0;
  for (const KernelSlotInfo& k : kernel_slots()) {
    if (!k.has[int(DeviceType::cpu)]) continue;
    ++cpu_slots;
    EXPECT_TRUE(k.has[int(DeviceType::cuda)]) << k.name << " has a CPU kernel and no CUDA kernel";
  }
  EXPECT_GE(cpu_slots, 37);  // the slots of the core at the time of writing, at least
  EXPECT_NO_THROW(allocator_for(Device::cuda(0)));
}

TEST(CudaBackend, ElementwiseOpsMatchTheCpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Tensor a = randn({3, 4, 5}), b = randn({4, 1}) , pos = abs(randn({3, 4, 5})) + 0.1;
  using Bin = Tensor (*)(const Tensor&, const Tensor&);
  for (Bin f : {Bin(add), Bin(sub), Bin(mul), Bin(div), Bin(maximum), Bin(minimum)})
    EXPECT_TRUE(all_close(f(on_gpu(a), on_gpu(b)), f(a, b), 1e-5, 1e-6));
  using Un = Tensor (*)(const Tensor&);
  for (Un f : {Un(neg), Un(exp), Un(tanh), Un(sigmoid), Un(relu), Un(silu), Un(sin), Un(cos), Un(abs), Un(square)})
    EXPECT_TRUE(all_close(f(on_gpu(a)), f(a), 1e-5, 1e-6));
  for (Un f : {Un(log), Un(sqrt), Un(rsqrt)}) EXPECT_TRUE(all_close(f(on_gpu(pos)), f(pos), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(gelu(on_gpu(a)), gelu(a), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(gelu(on_gpu(a), "tanh"), gelu(a, "tanh"), 1e-5, 1e-6));
  EXPECT_TRUE(all_close(clamp(on_gpu(a), -0.3, 0.4), clamp(a, -0.3, 0.4), 0, 0));
  EXPECT_TRUE(all_close(gt(on_gpu(a), on_gpu(b)), gt(a, b), 0, 0));
  EXPECT_TRUE(all_close(where(gt(on_gpu(a), on_gpu(b)), on_gpu(a), on_gpu(b)), where(gt(a, b), a, b), 0, 0));
}

TEST(CudaBackend, CopiesConvertDtypesAndStrides) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  Tensor x = randn({6, 7});
  for (DType t : {DType::f64, DType::bf16, DType::f16, DType::i32})
    EXPECT_TRUE(all_close(on_gpu(x).to(t), x.to(t), 0, 0)) << name(t);
  EXPECT_TRUE(all_close(on_gpu(x).t().contiguous(), x.t().contiguous(), 0, 0));
  Tensor g = on_gpu(zeros({6, 7}));
  g.copy_(x);
  EXPECT_TRUE(all_close(g, x, 0, 0));
  EXPECT_TRUE(all_close(on_gpu(full({5}, 2.5)), full({5}, 2.5), 0, 0));
}

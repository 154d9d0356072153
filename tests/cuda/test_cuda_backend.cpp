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

// Every kernel the CPU backend has, the CUDA backend has too.
TEST(CudaBackend, RegistersEveryKernelAndTheAllocatorAtLoad) {
  const std::pair<const char*, bool> slots[] = {
#define FM_SLOT(s) {#s, kernels::s.has(DeviceType::cuda)}
      FM_SLOT(copy), FM_SLOT(copy_across), FM_SLOT(fill), FM_SLOT(binary), FM_SLOT(compare), FM_SLOT(unary),
      FM_SLOT(where), FM_SLOT(reduce), FM_SLOT(reduce_leading), FM_SLOT(gemm), FM_SLOT(random),
      FM_SLOT(softmax_forward), FM_SLOT(softmax_backward), FM_SLOT(layer_norm_forward), FM_SLOT(layer_norm_backward),
      FM_SLOT(rms_norm_forward), FM_SLOT(rms_norm_backward), FM_SLOT(cross_entropy_forward),
      FM_SLOT(cross_entropy_backward), FM_SLOT(attention_forward), FM_SLOT(attention_backward), FM_SLOT(rotary),
      FM_SLOT(dropout), FM_SLOT(im2col), FM_SLOT(col2im), FM_SLOT(avg_pool2d_forward), FM_SLOT(avg_pool2d_backward),
      FM_SLOT(upsample_forward), FM_SLOT(upsample_backward), FM_SLOT(index_bounds), FM_SLOT(index_select),
      FM_SLOT(index_add), FM_SLOT(gather), FM_SLOT(scatter_add), FM_SLOT(adamw_step), FM_SLOT(sgd_step),
      FM_SLOT(ema_update),
#undef FM_SLOT
  };
  for (const auto& [name, has] : slots) EXPECT_TRUE(has) << name;
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

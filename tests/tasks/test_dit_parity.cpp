// fm::tasks::DiT against PyTorch: the weights and inputs written by
// tests/fixtures/make_dit_fixtures.py (the paper's DiT in plain torch, with a
// pooled-caption projection and optional masked cross-attention, renamed to
// libfm's parameters) go through libfm's DiT, then backward of
// sum(output * output_grad); the output, the gradient of every parameter and
// of x, pooled and context must match PyTorch's (f32, relative error below
// 1e-4, measured against the largest reference magnitude). Two cases:
// (a) cross-attention with a key mask plus the pooled vector; (b) the pooled
// vector only (class-conditional-like). Also: a fresh DiT outputs exactly
// zero, patchify's order is DiT's stride-p convolution, and the FLOPs count
// agrees with the model's own weight shapes.
#include <cmath>
#include <set>

#include "fm/image/patches.h"
#include "fm/tasks/dit_model.h"
#include "parity.h"

using namespace fm;
using fm::nn::StateDict;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;
const char* const kCross = "dit_cross_pooled.safetensors";
const char* const kPlain = "dit_plain_cond.safetensors";

using Fixture = fm::test::ParityFixture;

// The model options the script wrote into the fixture's metadata.
tasks::DiTOptions dit_options(const Fixture& f) {
  tasks::DiTOptions o;
  o.image_size = f.option("image_size");
  o.patch_size = f.option("patch_size");
  o.channels = f.option("channels");
  o.width = f.option("width");
  o.layers = f.option("layers");
  o.heads = f.option("heads");
  o.mlp_hidden = f.option("mlp_hidden");
  o.cond_dim = f.option("cond_dim");
  o.cross_attention = f.option("cross_attention") != 0;
  o.context_dim = f.option("context_dim");
  o.frequency_dim = f.option("frequency_dim");
  return o;
}

void run_case(const std::string& file) {
  const Fixture f(file);
  const tasks::DiTOptions o = dit_options(f);
  tasks::DiT model(o);
  fm::test::Comparer cmp(f, kTol);
  cmp("pos (libfm's sincos_pos_embed_2d vs DiT's)", model.pos, f.get("buffer.pos"));
  StateDict sd = f.params();
  sd["pos"] = f.get("buffer.pos");
  model.load_state_dict(sd);

  Tensor x = f.input_leaf("x"), pooled = f.input_leaf("pooled"), context, context_mask;
  if (o.cross_attention) {
    context = f.input_leaf("context");
    context_mask = f.get("input.context_mask");
    ASSERT_EQ(context_mask.dtype(), DType::b8);
  }
  Tensor y = model.forward(x, f.get("input.t"), pooled, context, context_mask);
  sum(y * f.get("output_grad")).backward();

  cmp("output", y, f.get("output"));
  cmp("grad of x", x.grad(), f.get("input_grad.x"));
  cmp("grad of pooled", pooled.grad(), f.get("input_grad.pooled"));
  if (o.cross_attention) cmp("grad of context", context.grad(), f.get("input_grad.context"));
  for (const auto& p : model.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

// libfm's parameter names and shapes against the fixture's, both ways; the
// positions are the one buffer.
void check_names(const std::string& file) {
  const Fixture f(file);
  tasks::DiT model(dit_options(f));
  fm::test::expect_same_parameters(model, f);
  ASSERT_EQ(model.named_buffers().size(), 1u);
  EXPECT_EQ(model.named_buffers()[0].name, "pos");
  EXPECT_FALSE(model.pos.requires_grad());
}

tasks::DiTOptions small_options(bool cross) {
  tasks::DiTOptions o;
  o.image_size = 8, o.patch_size = 2, o.channels = 3;
  o.width = 32, o.layers = 2, o.heads = 4;
  o.cond_dim = 12;
  o.cross_attention = cross, o.context_dim = cross ? 10 : 0;
  o.frequency_dim = 64;
  return o;
}

}  // namespace

TEST(DiTParity, ParameterNamesMatchBothWays) {
  check_names(kCross);
  check_names(kPlain);
}

TEST(DiTParity, CrossAttentionWithKeyMaskAndPooled) { run_case(kCross); }

TEST(DiTParity, PooledConditionOnly) { run_case(kPlain); }

// adaLN-Zero and the zero final layer: whatever the inputs, a fresh DiT
// predicts exactly zero; the gradient still reaches the final projection.
TEST(DiT, FreshModelOutputsExactlyZero) {
  for (bool cross : {false, true}) {
    const tasks::DiTOptions o = small_options(cross);
    Generator gen(7);
    tasks::DiT model(o, &gen);
    EXPECT_EQ(model.core->norm->named_parameters().size(), 0u);  // DiT's norm_final has no affine
    Tensor x = randn({2, 3, 8, 8}), t = tensor(std::vector<float>{3.0f, 871.0f}), pooled = randn({2, 12});
    Tensor context, mask;
    if (cross) {
      context = randn({2, 4, 10});
      mask = tensor(std::vector<uint8_t>{1, 1, 0, 0, 1, 1, 1, 1}, {2, 4}).to(DType::b8);
    }
    Tensor y = model.forward(x, t, pooled, context, mask);
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_EQ(max(abs(y)).item(), 0.0) << "cross " << cross;
    sum(y * randn(y.shape())).backward();
    EXPECT_GT(sum(abs(model.final_proj->weight.grad())).item(), 0.0);
    // The initialisation's other parts: xavier bound of the patch projection, timestep MLP at std 0.02.
    const double bound = std::sqrt(6.0 / double(12 + 32));
    EXPECT_LE(max(abs(model.patch_proj->weight)).item(), bound);
    EXPECT_GT(max(abs(model.patch_proj->weight)).item(), 0.5 * bound);
    EXPECT_NEAR(std::sqrt(var(model.t_embed->fc1->weight).item()), 0.02, 0.004);
    EXPECT_EQ(max(abs(model.core->blocks->operator[](1).ada->weight)).item(), 0.0);
    EXPECT_EQ(max(abs(model.core->blocks->operator[](0).attn->qkv->bias)).item(), 0.0);
  }
  tasks::DiT model(small_options(false));
  Tensor x = randn({1, 3, 8, 8}), t = zeros({1});
  EXPECT_THROW(model.forward(x, t), Error);                              // pooled missing (cond_dim > 0)
  EXPECT_THROW(model.forward(x, t, randn({1, 12}), randn({1, 3, 32})), Error);  // context without cross-attention
  EXPECT_THROW(model.forward(randn({1, 3, 8, 6}), t, randn({1, 12})), Error);
}

// patchify / unpatchify round-trip, and a Linear on patchify's (py, px, c)
// rows is DiT's stride-p Conv2d with the weight [D, C, p, p] permuted to
// [D, p, p, C].
TEST(DiT, PatchifyOrderIsDiTsConvolution) {
  const int64_t B = 2, C = 3, H = 8, W = 6, p = 2, D = 5;
  Tensor x = randn({B, C, H, W});
  Tensor patches = image::patchify(x, p);
  ASSERT_EQ(patches.shape(), (Shape{B, (H / p) * (W / p), p * p * C}));
  EXPECT_EQ(max(abs(image::unpatchify(patches, p, C, H, W) - x)).item(), 0.0);
  Tensor conv_w = randn({D, C, p, p}), bias = randn({D});
  Conv2dArgs args;
  args.stride[0] = args.stride[1] = p;
  Tensor conv = conv2d(x, conv_w, bias, args).flatten(2).transpose(1, 2);  // [B, N, D], patches row-major
  Tensor lin = linear(patches, conv_w.permute({0, 2, 3, 1}).reshape({D, p * p * C}), bias);
  EXPECT_LT(rel_err(lin, conv), 1e-6);
}

// The FLOPs count against the model's own shapes: 2 FLOPs per weight per
// token for the per-token Linears (per image for the conditioning path), plus
// attention's products, times 3 for forward and backward.
TEST(DiT, FlopsPerImageCountsEveryProduct) {
  for (bool cross : {false, true}) {
    const tasks::DiTOptions o = small_options(cross);
    tasks::DiT model(o);
    const double N = double(model.num_patches()), S = 7, w = double(o.width);
    double per_token = 0, per_image = 0, per_context_token = 0;
    for (const auto& p : model.named_parameters()) {
      if (p.tensor.dim() < 2) continue;
      const double n = double(p.tensor.numel());
      if (p.name.find("t_embed") == 0 || p.name.find("cond_proj") == 0 || p.name.find("ada") != std::string::npos)
        per_image += n;
      else if (p.name.find("cross.kv") != std::string::npos)
        per_context_token += n;
      else
        per_token += n;
    }
    const double attention = double(o.layers) * 4.0 * N * w * (N + (cross ? S : 0.0));
    const double expect = 3.0 * (2.0 * (N * per_token + per_image + S * per_context_token) + attention);
    EXPECT_NEAR(tasks::dit_flops_per_image(o, int64_t(S)), expect, 1e-9 * expect) << "cross " << cross;
  }
}

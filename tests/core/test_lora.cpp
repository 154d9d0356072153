// LoRA (fm/nn/lora.h, nn::Linear's adapter) against peft
// (tests/fixtures/make_lora_fixtures.py): forward and gradients, plain and
// rslora scaling, merging equal to peft's merge_and_unload, unmerging back
// to the very same bits, and name patterns.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/nn/lora.h"
#include "fm/ops.h"
#include "parity.h"

namespace fm {
namespace {

// The fixture's model, with its names.
struct Tiny : nn::Module {
  Tiny() {
    qkv = register_module("qkv", std::make_shared<nn::Linear>(nn::LinearOptions{8, 12, true}));
    proj = register_module("proj", std::make_shared<nn::Linear>(nn::LinearOptions{12, 8, false}));
    head = register_module("head", std::make_shared<nn::Linear>(nn::LinearOptions{8, 3, true}));
  }
  Tensor forward(const Tensor& x) const { return head->forward(tanh(proj->forward(gelu(qkv->forward(x)))) + x); }
  std::shared_ptr<nn::Linear> qkv, proj, head;
};

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), x.nbytes()) == 0;
}

class LoraPeft : public ::testing::TestWithParam<const char*> {};

TEST_P(LoraPeft, ForwardGradientsAndMergeEqualPeft) {
  const std::string v = GetParam();
  const test::ParityFixture f("lora_peft.safetensors");
  Tiny m;
  m.to(DType::f64);
  nn::LoraOptions o;
  o.rank = 4;
  o.alpha = 6;
  o.rslora = v == "rslora";
  const auto adapted = nn::add_lora(m, {"qkv", "proj"}, o);
  EXPECT_EQ(adapted, (std::vector<std::string>{"qkv", "proj"}));
  nn::StateDict params;
  for (const auto& [name, t] : m.state_dict()) params[name] = f.get(v + ".param." + name);
  m.load_state_dict(params);
  for (const auto& p : m.named_parameters())  // peft trains the adapters only
    Tensor(p.tensor).requires_grad_(p.name.find("lora_") != std::string::npos);

  const Tensor x = f.get("input.x").requires_grad_(true);
  const Tensor y = m.forward(x);
  (y * f.get("input.g")).sum().backward();
  test::Comparer cmp(f, 1e-10);
  cmp("out", y, f.get(v + ".out"));
  cmp("grad.x", x.grad(), f.get(v + ".grad.x"));
  for (const char* n : {"qkv.lora_A", "qkv.lora_B", "proj.lora_A", "proj.lora_B"}) {
    const Tensor p = m.state_dict().at(n);  // a copy: the map is a temporary
    cmp(std::string("grad.") + n, p.grad(), f.get(v + ".grad." + n));
  }
  EXPECT_FALSE(m.qkv->weight.grad().defined()) << "a frozen base weight got a gradient";

  // Merged: peft's merged weights, the same output without the adapter path.
  const Tensor qkv_before = m.qkv->weight.clone(), proj_before = m.proj->weight.clone();
  nn::merge_lora(m);
  EXPECT_TRUE(m.qkv->lora_merged() && m.proj->lora_merged() && !m.head->has_lora());
  cmp("merged.qkv.weight", m.qkv->weight, f.get(v + ".merged.qkv.weight"));
  cmp("merged.proj.weight", m.proj->weight, f.get(v + ".merged.proj.weight"));
  {
    NoGradGuard ng;
    cmp("merged out", m.forward(f.get("input.x")), f.get(v + ".out"));
  }
  nn::unmerge_lora(m);
  EXPECT_TRUE(same_bits(m.qkv->weight, qkv_before) && same_bits(m.proj->weight, proj_before))
      << "unmerge_lora did not restore the weights bit for bit";
}

INSTANTIATE_TEST_SUITE_P(Variants, LoraPeft, ::testing::Values("plain", "rslora"));

TEST(Lora, AdapterEqualsItsMergedWeightOnFreshInputs) {
  std::mt19937 rng(std::random_device{}());
  const int64_t rank = 1 + int64_t(rng() % 4), in = 3 + int64_t(rng() % 6), out = 2 + int64_t(rng() % 6);
  nn::Linear l(nn::LinearOptions{in, out, true});
  l.to(DType::f64);
  l.add_lora({rank, 0.5 + double(rng() % 8), 0.0, bool(rng() % 2)});
  {
    NoGradGuard ng;
    Tensor(l.lora_B).copy_(randn({out, rank}, DType::f64));
  }
  const Tensor x = randn({2, 3, in}, DType::f64).requires_grad_(true);
  const Tensor g = randn({2, 3, out}, DType::f64);
  const Tensor y = l.forward(x);
  (y * g).sum().backward();
  const Tensor dx = x.grad().clone();
  l.merge_lora();
  const Tensor x2 = x.detach().clone().requires_grad_(true);
  const Tensor y2 = l.forward(x2);
  (y2 * g).sum().backward();
  EXPECT_TRUE(test::all_close(y2, y, 1e-12, 1e-12));
  EXPECT_TRUE(test::all_close(x2.grad(), dx, 1e-12, 1e-12));
}

TEST(Lora, MergeAndUnloadGivesThePlainModelsNamesAndOutputs) {
  Tiny m;
  nn::add_lora(m, {"*"}, {2, 4.0, 0.0, false});  // every Linear, head included
  {
    NoGradGuard ng;
    for (auto& [name, l] : nn::named_linears(m)) Tensor(l->lora_B).copy_(randn(l->lora_B.shape()) * 0.1);
  }
  const Tensor x = randn({4, 8});
  NoGradGuard ng;
  const Tensor adapted = m.forward(x);
  nn::merge_and_unload_lora(m);
  Tiny plain;
  EXPECT_EQ(m.state_dict().size(), plain.state_dict().size());
  for (const auto& [name, t] : plain.state_dict()) EXPECT_TRUE(m.state_dict().count(name)) << name;
  EXPECT_TRUE(test::all_close(m.forward(x), adapted, 1e-5, 1e-5));
}

TEST(Lora, DropoutOnlyInTraining) {
  nn::Linear l(nn::LinearOptions{16, 16, false});
  l.add_lora({4, 8.0, 0.5, false});
  NoGradGuard ng;
  Tensor(l.lora_B).copy_(randn({16, 4}));
  const Tensor x = randn({8, 16});
  l.eval();
  const Tensor a = l.forward(x), b = l.forward(x);
  EXPECT_TRUE(same_bits(a, b));
  l.train();
  EXPECT_FALSE(test::all_close(l.forward(x), a, 1e-6, 1e-6)) << "dropout 0.5 left the adapter path unchanged";
}

TEST(Lora, PatternsAndErrors) {
  EXPECT_TRUE(nn::name_matches("qkv", "transformer.blocks.0.attn.qkv"));
  EXPECT_TRUE(nn::name_matches("*.attn.*", "transformer.blocks.0.attn.qkv"));
  EXPECT_TRUE(nn::name_matches("blocks.?.mlp.fc", "blocks.3.mlp.fc"));
  EXPECT_FALSE(nn::name_matches("blocks.?.mlp.fc", "blocks.13.mlp.fc"));
  EXPECT_FALSE(nn::name_matches("proj", "visual_proj"));
  EXPECT_FALSE(nn::name_matches("attn.qkv", "transformer.blocks.0.attn.qkv")) << "a dotted pattern is a full name";
  Tiny m;
  test::expect_error([&] { nn::add_lora(m, {"q_proj"}, {}); }, "the model's Linear layers are: qkv, proj, head");
  nn::add_lora(m, {"qkv"}, {});
  test::expect_error([&] { nn::add_lora(m, {"qkv"}, {}); }, "already there");
  test::expect_error([&] { m.proj->add_lora({0, 1.0, 0.0, false}); }, "rank must be positive");
  test::expect_error([&] { m.proj->unmerge_lora(); }, "without a merged adapter");
}

}  // namespace
}  // namespace fm

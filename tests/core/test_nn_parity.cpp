// fm::nn against PyTorch: transformer blocks (causal, masked, cross-attention,
// adaLN-Zero, LLaMA-style) and a small GPT load the parameters written by
// tests/fixtures/make_nn_fixtures.py, run forward and backward, and must match
// PyTorch's outputs and every input and parameter gradient (f32, relative
// error below 1e-4, measured against the largest reference magnitude).
#include <algorithm>
#include <cmath>

#include "fm/nn/gpt.h"
#include "fm/nn/transformer.h"
#include "parity.h"

using namespace fm;
using namespace fm::nn;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;

using Fixture = fm::test::ParityFixture;

void compare_param_grads(const Fixture& f, const Module& m, fm::test::Comparer& cmp) {
  for (const auto& p : m.named_parameters()) cmp("grad of " + p.name, p.tensor.grad(), f.get("param_grad." + p.name));
}

void run_block_case(const std::string& file) {
  const Fixture f(file);
  BlockOptions o;
  o.d_model = f.option("d_model");
  o.n_head = f.option("n_head");
  o.mlp_hidden = f.option("mlp_hidden");
  o.activation = f.meta("activation");
  o.norm = f.meta("norm");
  o.bias = f.option("bias") != 0;
  o.rotary = f.option("rotary") != 0;
  o.cross_attention = f.option("cross_attention") != 0;
  o.context_dim = f.option("context_dim");
  o.cond_dim = f.option("cond_dim");
  TransformerBlock block(o);
  block.load_state_dict(f.params());

  Tensor x = f.input_leaf("x");
  BlockInputs in;
  in.causal = f.option("causal") != 0;
  if (f.has("input.context")) in.context = f.input_leaf("context");
  if (f.has("input.cond")) in.cond = f.input_leaf("cond");
  if (f.has("input.mask")) in.mask = f.get("input.mask");
  Tensor y = block.forward(x, in);
  sum(y * f.get("output_grad")).backward();

  fm::test::Comparer cmp(f, kTol);
  cmp("output", y, f.get("output"));
  cmp("grad of x", x.grad(), f.get("input_grad.x"));
  if (in.context.defined()) cmp("grad of context", in.context.grad(), f.get("input_grad.context"));
  if (in.cond.defined()) cmp("grad of cond", in.cond.grad(), f.get("input_grad.cond"));
  compare_param_grads(f, block, cmp);
}

}  // namespace

TEST(NNParity, CausalBlock) { run_block_case("nn_block_causal.safetensors"); }
TEST(NNParity, BidirectionalMaskedBlock) { run_block_case("nn_block_bidirectional_masked.safetensors"); }
TEST(NNParity, CrossAttentionBlock) { run_block_case("nn_block_cross.safetensors"); }
TEST(NNParity, AdaLNZeroBlock) { run_block_case("nn_block_adaln.safetensors"); }
TEST(NNParity, LlamaStyleBlock) { run_block_case("nn_block_llama.safetensors"); }

TEST(NNParity, GPT) {
  const Fixture f("nn_gpt2layer.safetensors");
  GPTOptions o;
  o.vocab_size = f.option("vocab_size");
  o.block_size = f.option("block_size");
  o.n_layer = f.option("n_layer");
  o.n_head = f.option("n_head");
  o.d_model = f.option("d_model");
  GPT gpt(o);
  gpt.load_state_dict(f.params());

  Tensor logits = gpt.forward(f.get("input.ids"));
  Tensor loss = cross_entropy(logits.view({-1, o.vocab_size}), f.get("input.targets").view({-1}));
  loss.backward();

  fm::test::Comparer cmp(f, kTol);
  cmp("logits", logits, f.get("output"));
  cmp("loss", loss.reshape({1}), f.get("loss"));
  compare_param_grads(f, gpt, cmp);
}

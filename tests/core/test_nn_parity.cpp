// fm::nn against PyTorch: transformer blocks (causal, masked, cross-attention,
// adaLN-Zero, LLaMA-style) and a small GPT load the parameters written by
// tests/fixtures/make_nn_fixtures.py, run forward and backward, and must match
// PyTorch's outputs and every input and parameter gradient (f32, relative
// error below 1e-4, measured against the largest reference magnitude).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>

#include "fm/io/safetensors.h"
#include "fm/nn/gpt.h"
#include "fm/nn/transformer.h"
#include "helpers.h"

using namespace fm;
using namespace fm::nn;
using fm::test::rel_err;

namespace {

constexpr double kTol = 1e-4;

class Fixture {
 public:
  explicit Fixture(const std::string& file)
      : name_(file),
        st_(io::load_safetensors((std::filesystem::path(__FILE__).parent_path().parent_path() / "fixtures" / file).string())) {}

  bool has(const std::string& key) const { return st_.tensors.count(key) > 0; }
  Tensor get(const std::string& key) const {
    auto it = st_.tensors.find(key);
    if (it == st_.tensors.end()) throw Error(name_ + ": no tensor '" + key + "'");
    return it->second.clone();  // off the file mapping
  }
  // A floating input as a leaf that collects its gradient.
  Tensor input_leaf(const std::string& key) const { return get("input." + key).requires_grad_(true); }
  int64_t option(const std::string& key) const { return std::stoll(meta(key)); }
  std::string meta(const std::string& key) const {
    auto it = st_.metadata.find(key);
    if (it == st_.metadata.end()) throw Error(name_ + ": no metadata '" + key + "'");
    return it->second;
  }
  StateDict params() const {
    StateDict sd;
    for (const auto& [key, t] : st_.tensors)
      if (key.rfind("param.", 0) == 0) sd[key.substr(6)] = t;
    return sd;
  }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  io::Safetensors st_;
};

// Compares one tensor, remembers the worst error for the summary line.
struct Comparer {
  explicit Comparer(const Fixture& fixture) : f(fixture) {}
  const Fixture& f;
  double worst = 0;
  std::string worst_name;
  void operator()(const std::string& what, const Tensor& actual, const Tensor& expected) {
    ASSERT_TRUE(actual.defined()) << f.name() << ": " << what << " was not computed";
    const double e = rel_err(actual, expected);
    EXPECT_LT(e, kTol) << f.name() << ": " << what;
    if (e >= worst) worst = e, worst_name = what;
  }
  ~Comparer() { std::cout << f.name() << ": max relative error " << worst << " (" << worst_name << ")\n"; }
};

void compare_param_grads(const Fixture& f, const Module& m, Comparer& cmp) {
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

  Comparer cmp(f);
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

  Comparer cmp(f);
  cmp("logits", logits, f.get("output"));
  cmp("loss", loss.reshape({1}), f.get("loss"));
  compare_param_grads(f, gpt, cmp);
}

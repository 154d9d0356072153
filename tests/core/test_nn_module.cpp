// fm::nn::Module mechanics (names, tags, registration errors, state dicts,
// train/eval, dtype moves, gradients, flat parameter buffers) and the basic
// layers' forward passes against naive loops.
#include <algorithm>
#include <cmath>
#include <set>

#include "fm/nn/flat.h"
#include "fm/nn/gpt.h"
#include "fm/nn/layers.h"
#include "fm/tensor_impl.h"
#include "helpers.h"

using namespace fm;
using namespace fm::nn;
using fm::test::all_close;

namespace {

GPT tiny_gpt() {
  GPTOptions o;
  o.vocab_size = 11;
  o.block_size = 8;
  o.n_layer = 2;
  o.n_head = 2;
  o.d_model = 8;
  o.dropout = 0.1;
  return GPT(o);
}

std::vector<std::string> names_of(const std::vector<NamedTensor>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) out.push_back(p.name);
  return out;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A module that registers what the test asks for.
struct Probe : Module {
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
};

}  // namespace

TEST(Module, HierarchicalNamesInRegistrationOrder) {
  GPT gpt = tiny_gpt();
  const std::vector<std::string> names = names_of(gpt.named_parameters());
  const std::vector<std::string> first = {"wte.weight",
                                          "wpe.weight",
                                          "transformer.blocks.0.norm1.weight",
                                          "transformer.blocks.0.norm1.bias",
                                          "transformer.blocks.0.attn.qkv.weight",
                                          "transformer.blocks.0.attn.qkv.bias",
                                          "transformer.blocks.0.attn.proj.weight",
                                          "transformer.blocks.0.attn.proj.bias",
                                          "transformer.blocks.0.norm2.weight",
                                          "transformer.blocks.0.norm2.bias",
                                          "transformer.blocks.0.mlp.fc.weight",
                                          "transformer.blocks.0.mlp.fc.bias",
                                          "transformer.blocks.0.mlp.proj.weight",
                                          "transformer.blocks.0.mlp.proj.bias",
                                          "transformer.blocks.1.norm1.weight"};
  ASSERT_GE(names.size(), first.size());
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + first.size()), first);
  EXPECT_EQ(names.back(), "transformer.norm.bias");
  EXPECT_EQ(names.size(), 2u + 2 * 12 + 2);  // embeddings, 12 per block, final norm (tied head)
  const auto children = gpt.named_children();
  ASSERT_EQ(children.size(), 3u);
  EXPECT_EQ(children[2].first, "transformer");
  EXPECT_EQ(gpt.parameters().size(), names.size());

  GPTOptions untied = gpt.options;
  untied.tie_embeddings = false;
  const std::vector<NamedTensor> with_head = GPT(untied).named_parameters();
  EXPECT_EQ(with_head.back().name, "lm_head.weight");
  EXPECT_EQ(with_head.back().tags, 0u);
  EXPECT_EQ(with_head.size(), names.size() + 1);
}

TEST(Module, NoDecayTagsOnBiasesNormsAndEmbeddings) {
  GPT gpt = tiny_gpt();
  for (const auto& p : gpt.named_parameters()) {
    const bool no_decay = contains(p.name, "bias") || contains(p.name, "norm") || contains(p.name, "wte") ||
                          contains(p.name, "wpe");
    EXPECT_EQ((p.tags & kNoDecay) != 0, no_decay) << p.name;
  }
  GroupNorm gn({2, 4});
  Conv2d conv({3, 4, {3, 3}});
  for (const auto& p : gn.named_parameters()) EXPECT_TRUE(p.tags & kNoDecay) << p.name;
  EXPECT_EQ(conv.named_parameters()[0].tags, 0u);
  EXPECT_EQ(conv.named_parameters()[1].tags, uint32_t(kNoDecay));
}

TEST(Module, RegistrationErrors) {
  Probe m;
  m.register_parameter("w", zeros({2}));
  m.register_buffer("running", zeros({2}));
  m.register_module("child", std::make_shared<Linear>(LinearOptions{2, 2}));
  EXPECT_THROW(m.register_parameter("w", zeros({2})), Error);
  EXPECT_THROW(m.register_parameter("running", zeros({2})), Error);
  EXPECT_THROW(m.register_parameter("child", zeros({2})), Error);
  EXPECT_THROW(m.register_buffer("w", zeros({2})), Error);
  EXPECT_THROW(m.register_module("w", std::make_shared<Linear>(LinearOptions{2, 2})), Error);
  EXPECT_THROW(m.register_parameter("a.b", zeros({2})), Error);
  EXPECT_THROW(m.register_module("a.b", std::make_shared<Linear>(LinearOptions{2, 2})), Error);
  EXPECT_THROW(m.register_parameter("", zeros({2})), Error);
  EXPECT_THROW(m.register_parameter("undefined", Tensor()), Error);
  // Nothing half-registered: one parameter, one buffer, one child's two.
  EXPECT_EQ(names_of(m.named_parameters()), (std::vector<std::string>{"w", "child.weight", "child.bias"}));
  EXPECT_EQ(names_of(m.named_buffers()), std::vector<std::string>{"running"});
  EXPECT_EQ(m.state_dict().size(), 4u);
  EXPECT_TRUE(m.named_parameters()[0].tensor.requires_grad());
  EXPECT_FALSE(m.named_buffers()[0].tensor.requires_grad());
}

TEST(Module, InvalidLayerOptions) {
  EXPECT_THROW(Linear({0, 3}), Error);
  EXPECT_THROW(Embedding({4, 2, 4}), Error);   // padding_idx out of range
  EXPECT_THROW(Embedding({4, 2, -2}), Error);  // -1 is "none"; no counting from the end
  EXPECT_THROW(GroupNorm({3, 4}), Error);
  EXPECT_THROW(GroupNorm({2, 0}), Error);
  EXPECT_THROW(Dropout(1.5), Error);
  Conv2dOptions o{3, 4, {3, 3}};
  o.args.groups = 2;
  EXPECT_THROW(Conv2d{o}, Error);
  EXPECT_THROW(ConvTranspose2d{o}, Error);
  o.args.groups = 0;  // must throw, not divide by zero
  EXPECT_THROW(Conv2d{o}, Error);
  EXPECT_THROW(ConvTranspose2d{o}, Error);
  EXPECT_THROW(Conv1d({4, 4, 3, Conv1dArgs{1, 0, 1, 0}}), Error);
  EXPECT_THROW(Conv2d({3, 4, {0, 3}}), Error);
  EXPECT_THROW(Conv1d({3, 4, 0}), Error);
}

TEST(Module, StateDictRoundTrip) {
  GPT a = tiny_gpt(), b = tiny_gpt();
  StateDict sd = a.state_dict();
  EXPECT_EQ(sd.size(), a.named_parameters().size());
  EXPECT_TRUE(sd.at("wte.weight").is_same(a.wte->weight));  // shares, not copies
  b.load_state_dict(sd);
  for (const auto& p : b.named_parameters()) EXPECT_TRUE(all_close(p.tensor, sd.at(p.name), 0, 0)) << p.name;
  // Loading converts dtypes.
  StateDict f64;
  for (const auto& [n, t] : sd) f64[n] = (t * 2.0).to(DType::f64);
  b.load_state_dict(f64);
  EXPECT_EQ(b.wte->weight.dtype(), DType::f32);
  EXPECT_TRUE(all_close(b.wte->weight, a.wte->weight * 2.0, 0, 0));
}

TEST(Module, StrictLoadListsEveryMismatchAndChangesNothing) {
  GPT gpt = tiny_gpt();
  StateDict before;
  for (const auto& [n, t] : gpt.state_dict()) before[n] = t.clone();
  StateDict bad;
  for (const auto& [n, t] : before) bad[n] = t * 0.0 + 7.0;
  bad.erase("transformer.blocks.1.attn.qkv.bias");
  bad.erase("wpe.weight");
  bad["transformer.blocks.2.attn.qkv.bias"] = zeros({24});
  bad["transformer.blocks.0.mlp.fc.weight"] = zeros({32, 9});
  std::string message;
  try {
    gpt.load_state_dict(bad);
  } catch (const Error& e) {
    message = e.what();
  }
  for (const char* name : {"transformer.blocks.1.attn.qkv.bias", "wpe.weight", "transformer.blocks.2.attn.qkv.bias",
                           "transformer.blocks.0.mlp.fc.weight"})
    EXPECT_TRUE(contains(message, name)) << name << " not in: " << message;
  EXPECT_TRUE(contains(message, "missing") && contains(message, "unexpected") && contains(message, "shape"))
      << message;
  for (const auto& [n, t] : gpt.state_dict()) EXPECT_TRUE(all_close(t, before.at(n), 0, 0)) << n;

  // Not strict: missing and unexpected names are fine, shapes still must match.
  bad.erase("transformer.blocks.0.mlp.fc.weight");
  gpt.load_state_dict(bad, false);
  EXPECT_TRUE(all_close(gpt.wte->weight, full({11, 8}, 7.0), 0, 0));
  EXPECT_TRUE(all_close(gpt.wpe->weight, before.at("wpe.weight"), 0, 0));
  bad["transformer.norm.weight"] = zeros({9});
  EXPECT_THROW(gpt.load_state_dict(bad, false), Error);
}

TEST(Module, TrainEvalPropagates) {
  GPT gpt = tiny_gpt();
  EXPECT_TRUE(gpt.is_training());
  gpt.eval();
  EXPECT_FALSE(gpt.is_training());
  EXPECT_FALSE((*gpt.transformer->blocks)[1].mlp->drop->is_training());
  EXPECT_FALSE((*gpt.transformer->blocks)[0].attn->drop->is_training());
  // In eval mode dropout is off: two forwards agree.
  Tensor ids = tensor(std::vector<int64_t>{1, 2, 3, 4}, {1, 4});
  EXPECT_TRUE(all_close(gpt.forward(ids), gpt.forward(ids), 0, 0));
  gpt.train();
  EXPECT_TRUE((*gpt.transformer->blocks)[1].mlp->drop->is_training());
  EXPECT_FALSE(all_close(gpt.forward(ids), gpt.forward(ids), 0, 0));
}

TEST(Module, ToDTypeKeepsHandles) {
  Linear lin({3, 2});
  Tensor w = lin.weight;  // a handle held elsewhere (say, by an optimizer)
  const std::vector<double> values = w.to_vector<double>();
  Tensor x = randn({4, 3});
  sum(lin.forward(x)).backward();
  lin.to(DType::f64);
  EXPECT_EQ(w.dtype(), DType::f64);
  EXPECT_EQ(lin.bias.dtype(), DType::f64);
  EXPECT_EQ(w.grad().dtype(), DType::f64);
  EXPECT_TRUE(w.requires_grad() && w.is_leaf());
  EXPECT_TRUE(all_close(w, values, 0, 0));
  lin.zero_grad();
  Tensor y = lin.forward(x.to(DType::f64));
  EXPECT_EQ(y.dtype(), DType::f64);
  sum(y).backward();
  EXPECT_EQ(w.grad().dtype(), DType::f64);
  EXPECT_TRUE(all_close(w.grad().select(0, 0), sum(x.to(DType::f64), {0}), 1e-12, 1e-12));
  EXPECT_THROW(lin.to(DType::i64), Error);
}

TEST(Module, NumParametersAndZeroGrad) {
  EXPECT_EQ(Linear({3, 5}).num_parameters(), 20);
  EXPECT_EQ(Linear({3, 5, false}).num_parameters(), 15);
  GPT gpt = tiny_gpt();
  const int64_t d = 8, per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d);
  EXPECT_EQ(gpt.num_parameters(), 11 * d + 8 * d + 2 * per_block + 2 * d);

  gpt.eval();
  sum(gpt.forward(tensor(std::vector<int64_t>{1, 2, 3}, {1, 3}))).backward();
  Tensor g = gpt.wte->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(sum(abs(g)).item(), 0.0);
  gpt.zero_grad();
  for (const auto& p : gpt.named_parameters()) {
    ASSERT_TRUE(p.tensor.grad().defined()) << p.name;
    EXPECT_EQ(sum(abs(p.tensor.grad())).item(), 0.0) << p.name;
  }
  EXPECT_TRUE(gpt.wte->weight.grad().is_same(g));  // zeroed in place, still allocated
}

// ---- flat parameter buffers

namespace {

bool is_view_of(const Tensor& view, const Tensor& base) {
  return view.impl()->storage == base.impl()->storage;
}

std::vector<Tensor> grads_of(const Module& m) {
  std::vector<Tensor> out;
  for (const auto& p : m.named_parameters()) out.push_back(p.tensor.grad().clone());
  return out;
}

}  // namespace

TEST(FlatParameters, ParamsBecomeViewsOfOneBufferPerDType) {
  GPT gpt = tiny_gpt();
  gpt.transformer->norm->to(DType::f64);  // a second dtype
  StateDict values;
  for (const auto& [n, t] : gpt.state_dict()) values[n] = t.clone();
  const std::vector<NamedTensor> params = gpt.named_parameters();

  FlatParameters flat = flatten_parameters(gpt);
  ASSERT_EQ(flat.groups.size(), 2u);
  size_t slots = 0;
  for (const FlatGroup& g : flat.groups) {
    EXPECT_EQ(g.data.dim(), 1);
    EXPECT_EQ(g.data.dtype(), g.dtype);
    EXPECT_EQ(g.grad.shape(), g.data.shape());
    uint32_t last_tags = 0;
    for (size_t i = 0; i < g.slots.size(); ++i) {
      const FlatSlot& s = g.slots[i];
      EXPECT_EQ(s.offset % 16, 0) << s.name;
      if (i > 0) {
        EXPECT_GE(s.offset, g.slots[i - 1].offset + g.slots[i - 1].numel) << s.name;
      }
      EXPECT_GE(s.tags, last_tags) << s.name;  // grouped by tags
      last_tags = s.tags;
      EXPECT_TRUE(is_view_of(s.param, g.data)) << s.name;
      EXPECT_EQ(s.param.data_ptr(), g.data.narrow(0, s.offset, s.numel).data_ptr()) << s.name;
      ASSERT_TRUE(s.param.grad().defined()) << s.name;
      EXPECT_TRUE(is_view_of(s.param.grad(), g.grad)) << s.name;
      EXPECT_EQ(s.param.grad().data_ptr(), g.grad.narrow(0, s.offset, s.numel).data_ptr()) << s.name;
      EXPECT_TRUE(all_close(s.param, values.at(s.name), 0, 0)) << s.name;
      EXPECT_EQ(sum(abs(s.param.grad())).item(), 0.0) << s.name;
      ++slots;
    }
  }
  EXPECT_EQ(slots, params.size());
  EXPECT_EQ(flat.groups[1].dtype, DType::f64);
  EXPECT_EQ(flat.groups[1].slots.size(), 2u);
  // The module's own handles were rebound in place, and loading writes through them.
  for (const auto& p : params) EXPECT_TRUE(is_view_of(p.tensor, flat.groups[p.tensor.dtype() == DType::f64].data));
  StateDict doubled;
  for (const auto& [n, t] : values) doubled[n] = t * 2.0;
  gpt.load_state_dict(doubled);
  for (const FlatGroup& g : flat.groups)
    for (const FlatSlot& s : g.slots) {
      EXPECT_TRUE(is_view_of(s.param, g.data)) << s.name;
      EXPECT_TRUE(all_close(g.data.narrow(0, s.offset, s.numel), doubled.at(s.name).flatten(), 0, 0)) << s.name;
    }
}

TEST(FlatParameters, BackwardWritesIntoFlatGradAndMatchesUnflattened) {
  GPT gpt = tiny_gpt();
  gpt.eval();
  Tensor ids = tensor(std::vector<int64_t>{3, 1, 4, 1, 5, 9, 2, 6}, {2, 4});
  Tensor targets = tensor(std::vector<int64_t>{1, 4, 1, 5, 9, 2, 6, 5}, {2, 4});
  auto loss = [&] { return cross_entropy(gpt.forward(ids).view({-1, 11}), targets.view({-1})); };
  const double loss_before = loss().item();
  loss().backward();
  const std::vector<Tensor> before = grads_of(gpt);

  FlatParameters flat = flatten_parameters(gpt);
  ASSERT_EQ(flat.groups.size(), 1u);
  Tensor l = loss();
  EXPECT_NEAR(l.item(), loss_before, 1e-6);
  l.backward();
  const std::vector<Tensor> after = grads_of(gpt);
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(all_close(after[i], before[i], 1e-5, 1e-7)) << i;
  // The flat buffer is the gradient: its norm is the norm over all parameters.
  double sq = 0;
  for (const auto& g : after) sq += sum(g * g).item();
  EXPECT_NEAR(sum(flat.groups[0].grad * flat.groups[0].grad).item(), sq, 1e-6 * sq);
  // Writes into the flat data buffer reach the model (as an optimizer step would).
  flat.groups[0].data.zero_();
  EXPECT_EQ(sum(abs(gpt.wte->weight)).item(), 0.0);
  gpt.zero_grad();
  EXPECT_EQ(sum(abs(flat.groups[0].grad)).item(), 0.0);
}

// ---- layers against naive references

namespace {

// Naive grouped, strided, padded, dilated 2-D convolution, in doubles.
std::vector<double> naive_conv2d(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Conv2dArgs& a,
                                 Shape* out_shape) {
  const std::vector<double> x = xt.to_vector<double>(), w = wt.to_vector<double>(), b = bt.to_vector<double>();
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t O = wt.size(0), Cg = wt.size(1), KH = wt.size(2), KW = wt.size(3), Og = O / a.groups;
  const int64_t OH = (H + 2 * a.padding[0] - a.dilation[0] * (KH - 1) - 1) / a.stride[0] + 1;
  const int64_t OW = (W + 2 * a.padding[1] - a.dilation[1] * (KW - 1) - 1) / a.stride[1] + 1;
  *out_shape = {N, O, OH, OW};
  std::vector<double> y(size_t(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double acc = b.empty() ? 0.0 : b[size_t(o)];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t ki = 0; ki < KH; ++ki)
              for (int64_t kj = 0; kj < KW; ++kj) {
                const int64_t h = i * a.stride[0] - a.padding[0] + ki * a.dilation[0];
                const int64_t v = j * a.stride[1] - a.padding[1] + kj * a.dilation[1];
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const int64_t ci = (o / Og) * Cg + c;
                acc += x[size_t(((n * C + ci) * H + h) * W + v)] * w[size_t(((o * Cg + c) * KH + ki) * KW + kj)];
              }
          y[size_t(((n * O + o) * OH + i) * OW + j)] = acc;
        }
  return y;
}

// Naive transposed convolution (groups 1): scatters each input through the kernel.
std::vector<double> naive_conv_transpose2d(const Tensor& xt, const Tensor& wt, const Tensor& bt, const Conv2dArgs& a,
                                           Shape* out_shape) {
  const std::vector<double> x = xt.to_vector<double>(), w = wt.to_vector<double>(), b = bt.to_vector<double>();
  const int64_t N = xt.size(0), C = xt.size(1), H = xt.size(2), W = xt.size(3);
  const int64_t O = wt.size(1), KH = wt.size(2), KW = wt.size(3);
  const int64_t OH = (H - 1) * a.stride[0] - 2 * a.padding[0] + a.dilation[0] * (KH - 1) + a.output_padding[0] + 1;
  const int64_t OW = (W - 1) * a.stride[1] - 2 * a.padding[1] + a.dilation[1] * (KW - 1) + a.output_padding[1] + 1;
  *out_shape = {N, O, OH, OW};
  std::vector<double> y(size_t(N * O * OH * OW));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < OH * OW; ++i) y[size_t((n * O + o) * OH * OW + i)] = b.empty() ? 0.0 : b[size_t(o)];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t v = 0; v < W; ++v)
          for (int64_t o = 0; o < O; ++o)
            for (int64_t ki = 0; ki < KH; ++ki)
              for (int64_t kj = 0; kj < KW; ++kj) {
                const int64_t i = h * a.stride[0] - a.padding[0] + ki * a.dilation[0];
                const int64_t j = v * a.stride[1] - a.padding[1] + kj * a.dilation[1];
                if (i < 0 || i >= OH || j < 0 || j >= OW) continue;
                y[size_t(((n * O + o) * OH + i) * OW + j)] +=
                    x[size_t(((n * C + c) * H + h) * W + v)] * w[size_t(((c * O + o) * KH + ki) * KW + kj)];
              }
  return y;
}

// Normalises each row of `rows` values over `cols` values (LayerNorm or RMS).
std::vector<double> naive_row_norm(const std::vector<double>& x, int64_t cols, bool center, double eps) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / size_t(cols); ++r) {
    const double* row = &x[r * size_t(cols)];
    double mean = 0, sq = 0;
    if (center)
      for (int64_t i = 0; i < cols; ++i) mean += row[i] / double(cols);
    for (int64_t i = 0; i < cols; ++i) sq += (row[i] - mean) * (row[i] - mean) / double(cols);
    for (int64_t i = 0; i < cols; ++i) y[r * size_t(cols) + size_t(i)] = (row[i] - mean) / std::sqrt(sq + eps);
  }
  return y;
}

// Gives a layer's parameters random values (affine ones included).
void randomise(Module& m) {
  NoGradGuard ng;
  for (const auto& p : m.named_parameters()) Tensor(p.tensor).copy_(randn(p.tensor.shape()));
}

}  // namespace

TEST(Layers, Linear) {
  Linear lin({5, 3});
  Tensor x = randn({2, 4, 5});
  const std::vector<double> xv = x.to_vector<double>(), w = lin.weight.to_vector<double>(), b = lin.bias.to_vector<double>();
  std::vector<double> expect;
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t o = 0; o < 3; ++o) {
      double acc = b[size_t(o)];
      for (int64_t i = 0; i < 5; ++i) acc += xv[size_t(r * 5 + i)] * w[size_t(o * 5 + i)];
      expect.push_back(acc);
    }
  Tensor y = lin.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 4, 3}));
  EXPECT_TRUE(all_close(y, expect, 1e-5, 1e-6));
  Linear no_bias({5, 3, false});
  EXPECT_FALSE(no_bias.bias.defined());
  EXPECT_TRUE(all_close(no_bias.forward(x), matmul(x, no_bias.weight.t()), 1e-6, 1e-6));
}

TEST(Layers, EmbeddingWithPaddingIdx) {
  Embedding emb({6, 4, 2});
  EXPECT_EQ(sum(abs(emb.weight.select(0, 2))).item(), 0.0);  // the padding row starts at zero
  Tensor ids = tensor(std::vector<int64_t>{0, 2, 5, 2, 1, 0}, {2, 3});
  Tensor y = emb.forward(ids);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4}));
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_TRUE(all_close(y.view({6, 4}).select(0, i), emb.weight.select(0, ids.view({6}).to_vector<int64_t>()[i]), 0, 0));
  sum(y * randn({2, 3, 4})).backward();
  Tensor g = emb.weight.grad();
  EXPECT_EQ(sum(abs(g.select(0, 2))).item(), 0.0);  // no gradient to padding
  EXPECT_GT(sum(abs(g.select(0, 0))).item(), 0.0);
  EXPECT_EQ(sum(abs(g.select(0, 3))).item(), 0.0);  // unused row
}

TEST(Layers, LayerNormAndRMSNorm) {
  Tensor x = randn({3, 2, 6}) * 3.0 + 1.0;
  const std::vector<double> xv = x.to_vector<double>();
  // unit rows scaled by weight, plus bias (zero when absent)
  auto affine = [](const std::vector<double>& unit, const Tensor& w, const Tensor& b) {
    const std::vector<double> wv = w.to_vector<double>();
    const std::vector<double> bv = b.defined() ? b.to_vector<double>() : std::vector<double>(wv.size(), 0.0);
    std::vector<double> out(unit.size());
    for (size_t i = 0; i < unit.size(); ++i) out[i] = unit[i] * wv[i % wv.size()] + bv[i % wv.size()];
    return out;
  };
  LayerNorm ln({6});
  randomise(ln);
  EXPECT_TRUE(all_close(ln.forward(x), affine(naive_row_norm(xv, 6, true, 1e-5), ln.weight, ln.bias), 1e-4, 1e-5));
  RMSNorm rms({6});
  randomise(rms);
  EXPECT_EQ(rms.num_parameters(), 6);
  EXPECT_TRUE(all_close(rms.forward(x), affine(naive_row_norm(xv, 6, false, 1e-5), rms.weight, {}), 1e-4, 1e-5));
  // Without affine parameters (adaLN blocks) or without bias.
  LayerNorm plain({6, 1e-5, false});
  EXPECT_EQ(plain.num_parameters(), 0);
  EXPECT_TRUE(all_close(plain.forward(x), naive_row_norm(xv, 6, true, 1e-5), 1e-4, 1e-5));
  EXPECT_EQ(LayerNorm({6, 1e-5, true, false}).named_parameters().size(), 1u);
  EXPECT_EQ(RMSNorm({6, 1e-5, false}).num_parameters(), 0);
}

TEST(Layers, GroupNorm) {
  GroupNorm gn({2, 4});
  randomise(gn);
  Tensor x = randn({2, 4, 3, 3}) * 2.0 + 0.5;
  // Groups of 2 channels x 9 positions are contiguous rows of 18 values.
  const std::vector<double> unit = naive_row_norm(x.to_vector<double>(), 18, true, 1e-5);
  const std::vector<double> w = gn.weight.to_vector<double>(), b = gn.bias.to_vector<double>();
  std::vector<double> expect(unit.size());
  for (size_t i = 0; i < unit.size(); ++i) {
    const size_t c = (i / 9) % 4;
    expect[i] = unit[i] * w[c] + b[c];
  }
  EXPECT_TRUE(all_close(gn.forward(x), expect, 1e-4, 1e-5));
}

TEST(Layers, DropoutTrainAndEval) {
  Dropout drop(0.25);
  Tensor x = rand({4096}) + 1.0;
  Tensor y = drop.forward(x);
  const std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  int64_t zeros_seen = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0.0) ++zeros_seen;
    else EXPECT_NEAR(yv[i], xv[i] / 0.75, 1e-5);
  }
  EXPECT_NEAR(double(zeros_seen) / double(xv.size()), 0.25, 0.03);
  drop.eval();
  EXPECT_TRUE(all_close(drop.forward(x), x, 0, 0));
  EXPECT_TRUE(all_close(Dropout(0.0).forward(x), x, 0, 0));
  EXPECT_EQ(sum(abs(Dropout(1.0).forward(x))).item(), 0.0);
}

TEST(Layers, Conv1d) {
  Conv1dOptions o{4, 6, 3};
  o.args.stride = 2;
  o.args.padding = 1;
  o.args.dilation = 2;
  o.args.groups = 2;
  Conv1d conv(o);
  Tensor x = randn({2, 4, 11});
  Conv2dArgs a;
  a.stride[1] = 2, a.padding[1] = 1, a.dilation[1] = 2, a.groups = 2;
  Shape s;
  const std::vector<double> expect = naive_conv2d(x.unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, a, &s);
  Tensor y = conv.forward(x);
  EXPECT_EQ(y.shape(), (Shape{s[0], s[1], s[3]}));
  EXPECT_TRUE(all_close(y, expect, 1e-4, 1e-5));
}

TEST(Layers, Conv2d) {
  Conv2dOptions o{4, 6, {3, 2}};
  o.args.stride[0] = 2;
  o.args.padding[1] = 1;
  o.args.dilation[0] = 2;
  o.args.groups = 2;
  Conv2d conv(o);
  EXPECT_EQ(conv.weight.shape(), (Shape{6, 2, 3, 2}));
  Tensor x = randn({2, 4, 9, 7});
  Shape s;
  const std::vector<double> expect = naive_conv2d(x, conv.weight, conv.bias, o.args, &s);
  Tensor y = conv.forward(x);
  EXPECT_EQ(y.shape(), s);
  EXPECT_TRUE(all_close(y, expect, 1e-4, 1e-5));
}

TEST(Layers, ConvTranspose2d) {
  Conv2dOptions o{3, 5, {3, 3}};
  o.args.stride[0] = 2, o.args.stride[1] = 2;
  o.args.padding[0] = 1, o.args.padding[1] = 1;
  o.args.output_padding[0] = 1;
  ConvTranspose2d conv(o);
  EXPECT_EQ(conv.weight.shape(), (Shape{3, 5, 3, 3}));
  Tensor x = randn({2, 3, 4, 5});
  Shape s;
  const std::vector<double> expect = naive_conv_transpose2d(x, conv.weight, conv.bias, o.args, &s);
  Tensor y = conv.forward(x);
  EXPECT_EQ(y.shape(), (Shape{2, 5, 8, 9}));
  EXPECT_EQ(y.shape(), s);
  EXPECT_TRUE(all_close(y, expect, 1e-4, 1e-5));
}

TEST(Layers, DefaultInitRanges) {
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, as PyTorch.
  auto check = [](const Tensor& t, int64_t fan_in, const char* what) {
    const double bound = 1.0 / std::sqrt(double(fan_in));
    const double m = max(abs(t)).item();
    EXPECT_LE(m, bound) << what;
    if (t.numel() < 100) return;
    EXPECT_GT(m, 0.9 * bound) << what;  // uses the whole range
    EXPECT_LT(std::fabs(mean(t).item()), 0.2 * bound) << what;
  };
  Linear lin({50, 40});
  check(lin.weight, 50, "Linear.weight");
  check(lin.bias, 50, "Linear.bias");
  Conv1d c1({6, 8, 5});
  check(c1.weight, 30, "Conv1d.weight");
  check(c1.bias, 30, "Conv1d.bias");
  Conv2dOptions o{6, 8, {3, 3}};
  o.args.groups = 2;
  Conv2d c2(o);
  check(c2.weight, 27, "Conv2d.weight");
  check(c2.bias, 27, "Conv2d.bias");
  ConvTranspose2d ct({6, 8, {3, 3}});
  check(ct.weight, 72, "ConvTranspose2d.weight");  // fan from weight dim 1: 8 * 3 * 3
  check(ct.bias, 72, "ConvTranspose2d.bias");
  // Norms start at weight 1, bias 0; embeddings at N(0, 1).
  LayerNorm ln({7});
  EXPECT_TRUE(all_close(ln.weight, ones({7}), 0, 0));
  EXPECT_TRUE(all_close(ln.bias, zeros({7}), 0, 0));
  Embedding emb({100, 50});
  const double sd = std::sqrt(var(emb.weight).item());
  EXPECT_NEAR(sd, 1.0, 0.05);
}

// The shared transformer core: MLP and attention against plain-op references,
// KV-cache decoding against the full forward, adaLN-Zero, gradients of whole
// blocks against finite differences, timestep embeddings, GPT-2 init.
#include <cmath>
#include <functional>

#include "fm/nn/gpt.h"
#include "fm/nn/init.h"
#include "fm/nn/transformer.h"
#include "helpers.h"

using namespace fm;
using namespace fm::nn;
using fm::test::all_close;
using fm::test::grads_ok;
using Ts = std::vector<Tensor>;

namespace {

// [B, T, H * D] <-> [B, H, T, D]
Tensor heads(const Tensor& x, int64_t H) { return x.reshape({x.size(0), x.size(1), H, -1}).permute({0, 2, 1, 3}); }
Tensor unheads(const Tensor& x) { return x.permute({0, 2, 1, 3}).reshape({x.size(0), x.size(2), -1}); }

// Rotary embedding from its definition: pairs (i, i + D/2) turned by
// (start + t) * theta^(-2i/D).
Tensor naive_rotary(const Tensor& x, int64_t start, double theta = 10000.0) {
  const int64_t T = x.size(2), half = x.size(3) / 2;
  std::vector<double> c, s;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = double(start + t) * std::pow(theta, -2.0 * double(i) / double(2 * half));
      c.push_back(std::cos(a)), s.push_back(std::sin(a));
    }
  const Tensor cs = tensor(c, {T, half}).to(x.dtype()), sn = tensor(s, {T, half}).to(x.dtype());
  const Tensor x1 = x.narrow(3, 0, half), x2 = x.narrow(3, half, half);
  return cat({x1 * cs - x2 * sn, x2 * cs + x1 * sn}, 3);
}

// softmax(q k^T / sqrt(D) masked) v with plain ops; mask bool (true = attend).
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal) {
  Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(3))));
  const int64_t Tq = q.size(2), Tk = k.size(2);
  if (causal) {
    Tensor allowed = le(arange(double(Tk)).unsqueeze(0), arange(double(Tq)).unsqueeze(1) + double(Tk - Tq));
    s = masked_fill(s, logical_not(allowed), -1e30);
  }
  if (mask.defined()) s = masked_fill(s, logical_not(mask), -1e30);
  return matmul(softmax(s, -1), v);
}

Tensor ref_self_attention(const MultiheadAttention& a, const Tensor& x, const Tensor& mask, bool causal) {
  const int64_t d = a.options.d_model, H = a.options.n_head;
  Tensor all = linear(x, a.qkv->weight, a.qkv->bias);
  Tensor q = heads(all.narrow(2, 0, d), H), k = heads(all.narrow(2, d, d), H), v = heads(all.narrow(2, 2 * d, d), H);
  if (a.options.rotary) q = naive_rotary(q, 0), k = naive_rotary(k, 0);
  return linear(unheads(naive_attention(q, k, v, mask, causal)), a.proj->weight, a.proj->bias);
}

// Every parameter of an f64 module against central differences of
// sum(f() * r), r fixed and random.
::testing::AssertionResult param_grads_ok(Module& m, const std::function<Tensor()>& f) {
  m.zero_grad();
  Generator gen(7);
  const Tensor r = randn(f().shape(), DType::f64, &gen);
  sum(f() * r).backward();
  NoGradGuard ng;
  for (const auto& p : m.named_parameters()) {
    double* px = p.tensor.data<double>();
    const std::vector<double> analytic = p.tensor.grad().to_vector<double>();
    for (int64_t i = 0; i < p.tensor.numel(); ++i) {
      const double orig = px[i], eps = 1e-6;
      px[i] = orig + eps;
      const double plus = sum(f() * r).item();
      px[i] = orig - eps;
      const double minus = sum(f() * r).item();
      px[i] = orig;
      const double numeric = (plus - minus) / (2 * eps);
      if (!(std::fabs(analytic[size_t(i)] - numeric) <= 1e-6 + 1e-4 * std::fabs(numeric)))
        return ::testing::AssertionFailure() << p.name << "[" << i << "]: analytic " << analytic[size_t(i)]
                                             << ", numeric " << numeric;
    }
  }
  return ::testing::AssertionSuccess();
}

void randomise(Module& m, double scale = 0.3) {
  for (const auto& p : m.named_parameters()) init::normal_(p.tensor, 0.0, scale);
}

// A bool [B, 1, T, T] pattern with a visible diagonal.
Tensor random_mask(int64_t B, int64_t T) {
  Tensor eye = eq(arange(double(T)).unsqueeze(0), arange(double(T)).unsqueeze(1)).to(DType::f32);
  return gt(maximum(rand({B, 1, T, T}), eye), scalar_tensor(0.4));
}

}  // namespace

TEST(MLPModule, ActivationsMatchTheirDefinition) {
  Tensor x = randn({2, 3, 8});
  MLP gelu_mlp({8});
  EXPECT_EQ(gelu_mlp.fc->weight.shape(), (Shape{32, 8}));  // hidden defaults to 4 d
  auto lin = [](const Linear& l, const Tensor& v) { return matmul(v, l.weight.t()) + l.bias; };
  EXPECT_TRUE(all_close(gelu_mlp.forward(x), lin(*gelu_mlp.proj, gelu(lin(*gelu_mlp.fc, x))), 1e-5, 1e-6));
  MLP tanh_mlp({8, 16, "gelu_tanh"});
  EXPECT_TRUE(all_close(tanh_mlp.forward(x), lin(*tanh_mlp.proj, gelu(lin(*tanh_mlp.fc, x), "tanh")), 1e-5, 1e-6));
  MLP swiglu({8, 12, "swiglu"});
  EXPECT_FALSE(swiglu.fc);
  EXPECT_EQ(swiglu.gate->weight.shape(), (Shape{12, 8}));
  Tensor h = silu(lin(*swiglu.gate, x)) * lin(*swiglu.up, x);
  EXPECT_TRUE(all_close(swiglu.forward(x), lin(*swiglu.proj, h), 1e-5, 1e-6));
  EXPECT_THROW(MLP({8, 0, "relu6"}), Error);
}

TEST(MultiheadAttention, SelfAttentionMatchesPlainOps) {
  const int64_t B = 2, T = 5, d = 12;
  Tensor x = randn({B, T, d});
  Tensor mask = random_mask(B, T);
  for (bool rotary : {false, true}) {
    AttentionOptions o{d, 3};
    o.rotary = rotary;
    MultiheadAttention attn(o);
    EXPECT_EQ(attn.qkv->weight.shape(), (Shape{3 * d, d}));
    for (bool causal : {false, true}) {
      EXPECT_TRUE(all_close(attn.forward(x, {}, {}, causal), ref_self_attention(attn, x, {}, causal), 1e-4, 1e-5))
          << "rotary " << rotary << " causal " << causal;
      EXPECT_TRUE(all_close(attn.forward(x, {}, mask, causal), ref_self_attention(attn, x, mask, causal), 1e-4, 1e-5))
          << "masked, rotary " << rotary << " causal " << causal;
    }
    // An additive float mask acts as the bool one.
    Tensor additive = where(mask, zeros({}), full({}, -1e9));
    EXPECT_TRUE(all_close(attn.forward(x, {}, additive), attn.forward(x, {}, mask), 1e-5, 1e-6));
  }
  MultiheadAttention attn({d, 3});
  EXPECT_THROW(attn.forward(randn({B, T, d + 1})), Error);
  EXPECT_THROW(MultiheadAttention({d, 5}), Error);
}

TEST(MultiheadAttention, CrossAttentionWithOtherContextDim) {
  const int64_t B = 2, T = 4, S = 7, d = 8, c = 6;
  AttentionOptions o{d, 2};
  o.cross = true;
  o.context_dim = c;
  MultiheadAttention attn(o);
  EXPECT_FALSE(attn.qkv);
  EXPECT_EQ(attn.kv->weight.shape(), (Shape{2 * d, c}));
  Tensor x = randn({B, T, d}), context = randn({B, S, c});
  Tensor q = heads(linear(x, attn.q->weight, attn.q->bias), 2);
  Tensor kv = linear(context, attn.kv->weight, attn.kv->bias);
  Tensor k = heads(kv.narrow(2, 0, d), 2), v = heads(kv.narrow(2, d, d), 2);
  Tensor expect = linear(unheads(naive_attention(q, k, v, {}, false)), attn.proj->weight, attn.proj->bias);
  EXPECT_TRUE(all_close(attn.forward(x, context), expect, 1e-4, 1e-5));
  // A key-padding mask over the context.
  Tensor keep = tensor(std::vector<uint8_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0}, {B, 1, 1, S}).to(DType::b8);
  Tensor masked = linear(unheads(naive_attention(q, k, v, keep, false)), attn.proj->weight, attn.proj->bias);
  EXPECT_TRUE(all_close(attn.forward(x, context, keep), masked, 1e-4, 1e-5));
  EXPECT_THROW(attn.forward(x), Error);  // no context
}

namespace {

GPT small_gpt() {
  GPTOptions o;
  o.vocab_size = 23;
  o.block_size = 16;
  o.n_layer = 2;
  o.n_head = 2;
  o.d_model = 16;
  return GPT(o);
}

// Feeds ids [B, T] in pieces of the given sizes through caches; returns the
// logits of all positions, concatenated.
Tensor decode_in_pieces(const GPT& gpt, const Tensor& ids, const std::vector<int64_t>& pieces) {
  std::vector<KVCache> caches;
  std::vector<Tensor> logits;
  int64_t at = 0;
  for (int64_t n : pieces) {
    logits.push_back(gpt.forward(ids.narrow(1, at, n), &caches));
    at += n;
    EXPECT_EQ(caches.size(), size_t(gpt.options.n_layer));
    EXPECT_EQ(caches[1].length(), at);
  }
  return cat(logits, 1);
}

}  // namespace

TEST(KVCache, GPTTokenByTokenAndInChunksMatchFullForward) {
  GPT gpt = small_gpt();
  NoGradGuard ng;
  Tensor ids = randint(0, 23, {2, 9});
  Tensor full_logits = gpt.forward(ids);
  EXPECT_TRUE(all_close(decode_in_pieces(gpt, ids, std::vector<int64_t>(9, 1)), full_logits, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(decode_in_pieces(gpt, ids, {4, 1, 3, 1}), full_logits, 1e-5, 1e-5));
  // The cache may not run past the position table.
  std::vector<KVCache> caches;
  gpt.forward(randint(0, 23, {2, 12}), &caches);
  EXPECT_THROW(gpt.forward(randint(0, 23, {2, 5}), &caches), Error);
}

TEST(KVCache, RotaryTransformerMatchesFullForward) {
  BlockOptions b;
  b.d_model = 16, b.n_head = 4, b.norm = "rmsnorm", b.activation = "swiglu", b.rotary = true, b.bias = false;
  Transformer t({b, 2});
  NoGradGuard ng;
  Tensor x = randn({2, 7, 16});
  BlockInputs in;
  in.causal = true;
  Tensor full_out = t.forward(x, in);
  std::vector<KVCache> caches;
  std::vector<Tensor> outs;
  int64_t at = 0;
  for (int64_t n : {3, 1, 1, 2}) {
    outs.push_back(t.forward(x.narrow(1, at, n), in, &caches));
    at += n;
  }
  EXPECT_TRUE(all_close(cat(outs, 1), full_out, 1e-5, 1e-5));
  for (auto& c : caches) c.clear();
  EXPECT_EQ(caches[0].length(), 0);
}

TEST(AdaLNZero, BlockStartsAsIdentityAndAdaGetsGradients) {
  BlockOptions o;
  o.d_model = 8, o.n_head = 2, o.cond_dim = 5;
  TransformerBlock block(o);
  EXPECT_EQ(block.norm1->named_parameters().size(), 0u);  // modulated norms have no affine parameters
  EXPECT_EQ(block.ada->weight.shape(), (Shape{48, 5}));
  Tensor x = randn({2, 3, 8}).requires_grad_(true);
  Tensor cond = randn({2, 5}).requires_grad_(true);
  BlockInputs in;
  in.cond = cond;
  Tensor y = block.forward(x, in);
  EXPECT_TRUE(all_close(y, x, 0, 0));
  sum(y * randn({2, 3, 8})).backward();
  // Only the gates see a gradient at zero init; through them it reaches ada.
  EXPECT_GT(sum(abs(block.ada->weight.grad())).item(), 0.0);
  EXPECT_GT(sum(abs(block.ada->bias.grad())).item(), 0.0);
  EXPECT_EQ(sum(abs(block.attn->qkv->weight.grad())).item(), 0.0);
  EXPECT_THROW(block.forward(x), Error);  // cond missing
}

// BlockInputs::context_mask hides caption keys from the cross-attention: each
// row equals the same block run on only the keys its mask keeps (plain and
// adaLN-Zero blocks).
TEST(TransformerBlock, ContextMaskEqualsDroppingTheHiddenKeys) {
  const int64_t B = 2, T = 3, S = 5, d = 8, c = 6;
  BlockOptions o;
  o.d_model = d, o.n_head = 2, o.cross_attention = true, o.context_dim = c;
  BlockOptions ada = o;
  ada.cond_dim = 4;
  const std::vector<std::vector<int64_t>> keep = {{0, 1, 2}, {0, 2, 3, 4}};
  Tensor mask = tensor(std::vector<uint8_t>{1, 1, 1, 0, 0, 1, 0, 1, 1, 1}, {B, S}).to(DType::b8);
  for (const BlockOptions& bo : {o, ada}) {
    TransformerBlock block(bo);
    randomise(block);  // ada too, so the modulation is not zero
    NoGradGuard ng;
    Tensor x = randn({B, T, d}), context = randn({B, S, c}), cond = randn({B, 4});
    BlockInputs in;
    in.context = context;
    in.context_mask = mask;
    if (bo.cond_dim) in.cond = cond;
    Tensor masked = block.forward(x, in);
    for (int64_t b = 0; b < B; ++b) {
      BlockInputs one;
      one.context = index_select(context.narrow(0, b, 1), 1, tensor(keep[size_t(b)]));
      if (bo.cond_dim) one.cond = cond.narrow(0, b, 1);
      EXPECT_TRUE(all_close(masked.narrow(0, b, 1), block.forward(x.narrow(0, b, 1), one), 1e-5, 1e-6))
          << "row " << b << ", cond_dim " << bo.cond_dim;
    }
    // All keys visible is the same as no mask.
    in.context_mask = ones({B, S}, DType::b8);
    Tensor all = block.forward(x, in);
    in.context_mask = Tensor();
    EXPECT_TRUE(all_close(all, block.forward(x, in), 1e-6, 1e-7));
    in.context_mask = ones({B, S + 1}, DType::b8);
    EXPECT_THROW(block.forward(x, in), Error);
  }
}

TEST(TransformerGradcheck, TinyBlocks) {
  BlockOptions plain;
  plain.d_model = 8, plain.n_head = 2, plain.mlp_hidden = 12;
  BlockOptions rich = plain;  // every option at once
  rich.norm = "rmsnorm", rich.activation = "swiglu", rich.rotary = true;
  rich.cross_attention = true, rich.context_dim = 6, rich.cond_dim = 4;
  for (const BlockOptions& o : {plain, rich}) {
    TransformerBlock block(o);
    block.to(DType::f64);
    randomise(block);  // ada too, so the modulation is not zero
    const Tensor x = fm::test::leaf({2, 3, 8}), context = fm::test::leaf({2, 2, 6}), cond = fm::test::leaf({2, 4});
    auto run = [&](const Tensor& xv, const Tensor& cv, const Tensor& kv) {
      BlockInputs in;
      in.causal = true;
      if (o.cross_attention) in.context = cv;
      if (o.cond_dim) in.cond = kv;
      return block.forward(xv, in);
    };
    EXPECT_TRUE(grads_ok([&](const Ts& v) { return run(v[0], v[1], v[2]); }, {x, context, cond})) << o.norm;
    EXPECT_TRUE(param_grads_ok(block, [&] { return run(x, context, cond); })) << o.norm;
  }
}

TEST(TransformerGradcheck, TinyGPT) {
  GPTOptions o;
  o.vocab_size = 7, o.block_size = 4, o.n_layer = 1, o.n_head = 2, o.d_model = 4;
  GPT gpt(o);
  gpt.to(DType::f64);
  randomise(gpt);
  Tensor ids = tensor(std::vector<int64_t>{1, 6, 0, 3, 3, 2}, {2, 3});
  EXPECT_TRUE(param_grads_ok(gpt, [&] { return gpt.forward(ids); }));
}

TEST(Timestep, SinusoidsFollowDiT) {
  const std::vector<double> ts = {0.0, 1.0, 17.5, 999.0};
  for (int64_t dim : {8, 9}) {
    Tensor emb = timestep_sinusoids(tensor(ts), dim);
    EXPECT_EQ(emb.shape(), (Shape{4, dim}));
    // DiT: freqs = exp(-ln(max_period) * i / half); [cos(t f), sin(t f)], zero pad when odd.
    const int64_t half = dim / 2;
    std::vector<double> expect;
    for (double t : ts) {
      for (int64_t i = 0; i < half; ++i) expect.push_back(std::cos(t * std::exp(-std::log(10000.0) * double(i) / double(half))));
      for (int64_t i = 0; i < half; ++i) expect.push_back(std::sin(t * std::exp(-std::log(10000.0) * double(i) / double(half))));
      if (dim % 2) expect.push_back(0.0);
    }
    EXPECT_TRUE(all_close(emb, expect, 1e-4, 2e-4)) << dim;  // f32 angles up to 999 rad
  }
  Tensor t = tensor(std::vector<float>{3.0f, 250.0f});
  TimestepEmbedding te({16, 10});
  Tensor s = timestep_sinusoids(t, 16);
  EXPECT_TRUE(all_close(te.forward(t), linear(silu(linear(s, te.fc1->weight, te.fc1->bias)), te.fc2->weight, te.fc2->bias),
                        1e-5, 1e-6));
  EXPECT_EQ(te.forward(t).shape(), (Shape{2, 10}));
}

TEST(GPT2Init, Statistics) {
  GPTOptions o;
  o.vocab_size = 64, o.block_size = 32, o.n_layer = 8, o.n_head = 4, o.d_model = 64;
  GPT gpt(o);
  auto sd = [](const Tensor& t) { return std::sqrt(var(t).item()); };
  EXPECT_NEAR(sd(gpt.wte->weight), 0.02, 0.002);
  auto& blk = (*gpt.transformer->blocks)[3];
  EXPECT_NEAR(sd(blk.attn->qkv->weight), 0.02, 0.002);
  EXPECT_NEAR(sd(blk.mlp->fc->weight), 0.02, 0.002);
  EXPECT_NEAR(sd(blk.attn->proj->weight), 0.02 / 4.0, 0.0007);  // 0.02 / sqrt(2 n_layer)
  EXPECT_NEAR(sd(blk.mlp->proj->weight), 0.02 / 4.0, 0.0007);
  EXPECT_EQ(sum(abs(blk.attn->qkv->bias)).item(), 0.0);
  EXPECT_TRUE(all_close(blk.norm1->named_parameters()[0].tensor, ones({64}), 0, 0));
  // adaLN modulation stays zero under GPT-2 init.
  BlockOptions b;
  b.d_model = 8, b.n_head = 2, b.cond_dim = 3;
  Transformer dit({b, 2});
  init_gpt2(dit);
  EXPECT_EQ(sum(abs((*dit.blocks)[1].ada->weight)).item(), 0.0);
  EXPECT_GT(sum(abs((*dit.blocks)[1].attn->qkv->weight)).item(), 0.0);
}

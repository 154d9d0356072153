// scaled_dot_product_attention: forward against a naive loop reference,
// gradients against finite differences and against autograd through composed
// ops, fully masked rows, memory that never holds a score matrix, errors.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::grads_ok;
using fm::test::leaf;
using Ts = std::vector<Tensor>;

namespace {

// Reference in f64 loops: explicit score rows, softmax, weighted sum. A row
// that sees no key gives zeros.
std::vector<double> naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                                    bool causal, double scale) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3), Dv = v.size(3);
  const auto Q = q.to_vector<double>(), K = k.to_vector<double>(), V = v.to_vector<double>();
  std::vector<double> M;
  if (mask.defined()) M = mask.expand({B, H, Tq, Tk}).contiguous().to_vector<double>();
  const bool is_bool = mask.defined() && mask.dtype() == DType::b8;
  std::vector<double> out(static_cast<size_t>(B * H * Tq * Dv), 0.0), s(static_cast<size_t>(Tk));
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < Tq; ++i) {
      double mx = -INFINITY;
      for (int64_t j = 0; j < Tk; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += Q[size_t((bh * Tq + i) * D + d)] * K[size_t((bh * Tk + j) * D + d)];
        s[size_t(j)] = scale * dot;
        const double m = M.empty() ? 0.0 : M[size_t((bh * Tq + i) * Tk + j)];
        bool visible = !(causal && j > i + (Tk - Tq));
        if (is_bool) visible = visible && m != 0.0;
        else s[size_t(j)] += m;
        if (!visible) s[size_t(j)] = -INFINITY;
        mx = std::max(mx, s[size_t(j)]);
      }
      if (mx == -INFINITY) continue;
      double total = 0;
      for (int64_t j = 0; j < Tk; ++j) total += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
      for (int64_t j = 0; j < Tk; ++j)
        for (int64_t c = 0; c < Dv; ++c)
          out[size_t((bh * Tq + i) * Dv + c)] += s[size_t(j)] / total * V[size_t((bh * Tk + j) * Dv + c)];
    }
  return out;
}

// The same attention composed from libfm ops (full score matrix), for
// autograd comparisons. Needs every row to see at least one key.
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal) {
  const int64_t Tq = q.size(2), Tk = k.size(2);
  Tensor s = matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(3))));
  if (causal) {
    Tensor row = arange(double(Tq), DType::i64).view({Tq, 1}), col = arange(double(Tk), DType::i64).view({1, Tk});
    s = masked_fill(s, gt(col, row + (Tk - Tq)), -INFINITY);
  }
  Tensor e = exp(s - amax(s, {-1}, true).detach());
  return matmul(e / sum(e, {-1}, true), v);
}

struct Sizes {
  int64_t B, H, Tq, Tk, D, Dv;
};

}  // namespace

TEST(AttentionForward, MatchesNaiveAcrossShapes) {
  for (Sizes z : {Sizes{2, 3, 77, 77, 16, 16}, Sizes{1, 2, 130, 130, 64, 64}, Sizes{2, 2, 5, 130, 16, 16},
                  Sizes{1, 2, 130, 77, 16, 24}, Sizes{1, 1, 64, 128, 64, 64}})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "Tq " << z.Tq << " Tk " << z.Tk << " D " << z.D << " causal " << causal);
      Tensor q = randn({z.B, z.H, z.Tq, z.D}), k = randn({z.B, z.H, z.Tk, z.D}), v = randn({z.B, z.H, z.Tk, z.Dv});
      Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), causal);
      EXPECT_EQ(out.shape(), Shape({z.B, z.H, z.Tq, z.Dv}));
      EXPECT_TRUE(all_close(out, naive_attention(q, k, v, Tensor(), causal, 1 / std::sqrt(double(z.D))), 1e-4, 1e-5));
    }
}

TEST(AttentionForward, F64IsExactToRounding) {
  Tensor q = randn({2, 2, 70, 8}, DType::f64), k = randn({2, 2, 90, 8}, DType::f64), v = randn({2, 2, 90, 8}, DType::f64);
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v, Tensor(), true, 0.3),
                        naive_attention(q, k, v, Tensor(), true, 0.3), 1e-12, 1e-13));
}

TEST(AttentionForward, BoolMaskWithFullyMaskedRows) {
  const int64_t Tq = 77, Tk = 100;
  Tensor q = randn({2, 2, Tq, 16}), k = randn({2, 2, Tk, 16}), v = randn({2, 2, Tk, 16});
  // Broadcast over heads; rows 3 and 70 see nothing.
  Tensor keep = gt(randn({2, 1, Tq, Tk}), full({}, -0.5));
  Tensor rows = arange(double(Tq), DType::i64).view({Tq, 1});
  keep = where(logical_not(eq(rows, full({}, 3, DType::i64))), keep, zeros({}, DType::b8));
  keep = where(logical_not(eq(rows, full({}, 70, DType::i64))), keep, zeros({}, DType::b8));
  for (bool causal : {false, true}) {
    Tensor out = scaled_dot_product_attention(q, k, v, keep, causal);
    EXPECT_TRUE(all_close(out, naive_attention(q, k, v, keep, causal, 0.25), 1e-4, 1e-5));
    EXPECT_EQ(abs(out.select(2, 3)).sum().item(), 0.0);
  }
  // A [Tq, Tk] mask broadcasts over batch and heads.
  Tensor keep2 = keep.select(0, 0).select(0, 0);
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v, keep2), naive_attention(q, k, v, keep2, false, 0.25),
                        1e-4, 1e-5));
}

TEST(AttentionForward, AdditiveMask) {
  const int64_t Tq = 130, Tk = 130;
  Tensor q = randn({1, 3, Tq, 16}), k = randn({1, 3, Tk, 16}), v = randn({1, 3, Tk, 16});
  Tensor bias = randn({3, Tq, Tk});
  bias = masked_fill(bias, gt(rand({Tq, Tk}), full({}, 0.8)), -INFINITY);  // some -inf entries
  for (bool causal : {false, true})
    EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v, bias, causal), naive_attention(q, k, v, bias, causal, 0.25),
                          1e-4, 1e-5));
  // An f32 mask on f64 inputs is widened.
  Tensor q64 = q.to(DType::f64), k64 = k.to(DType::f64), v64 = v.to(DType::f64);
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q64, k64, v64, bias), naive_attention(q64, k64, v64, bias, false, 0.25),
                        1e-10, 1e-12));
}

TEST(AttentionForward, NonContiguousInputsFromBTHD) {
  Tensor q = randn({2, 40, 3, 16}).transpose(1, 2), k = randn({2, 50, 3, 16}).transpose(1, 2);
  Tensor v = randn({2, 50, 3, 16}).transpose(1, 2);
  ASSERT_FALSE(q.is_contiguous());
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q, k, v, Tensor(), true),
                        naive_attention(q, k, v, Tensor(), true, 0.25), 1e-4, 1e-5));
}

TEST(AttentionForward, HalfTypesComputeInF32) {
  Tensor q = randn({1, 2, 70, 32}), k = randn({1, 2, 70, 32}), v = randn({1, 2, 70, 32});
  for (DType t : {DType::bf16, DType::f16}) {
    Tensor qh = q.to(t), kh = k.to(t), vh = v.to(t);
    Tensor out = scaled_dot_product_attention(qh, kh, vh, Tensor(), true);
    EXPECT_EQ(out.dtype(), t);
    Tensor ref = scaled_dot_product_attention(qh.to(DType::f32), kh.to(DType::f32), vh.to(DType::f32), Tensor(), true);
    EXPECT_TRUE(all_close(out.to(DType::f32), ref.to(t).to(DType::f32), 0, 0));  // one rounding at the end
  }
}

TEST(AttentionGradcheck, CausalNonCausalMaskedCross) {
  auto attn = [](bool causal, Tensor mask = Tensor()) {
    return [causal, mask](const Ts& x) { return scaled_dot_product_attention(x[0], x[1], x[2], mask, causal); };
  };
  Tensor q = leaf({1, 2, 5, 4}), k = leaf({1, 2, 7, 4}), v = leaf({1, 2, 7, 3});
  EXPECT_TRUE(grads_ok(attn(false), {q, k, v}));
  EXPECT_TRUE(grads_ok(attn(true), {q, k, v}));
  Tensor keep = gt(randn({5, 7}), full({}, -0.7));
  EXPECT_TRUE(grads_ok(attn(false, keep), {q, k, v}));
  EXPECT_TRUE(grads_ok(attn(true, randn({2, 1, 7}, DType::f64)), {q, k, v}));
  // Cross attention with Tq > Tk: the first causal rows see no key.
  EXPECT_TRUE(grads_ok(attn(true), {leaf({2, 1, 6, 3}), leaf({2, 1, 4, 3}), leaf({2, 1, 4, 3})}));
  EXPECT_TRUE(grads_ok([](const Ts& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), false, 0.7); },
                       {leaf({2, 2, 3, 4}), leaf({2, 2, 6, 4}), leaf({2, 2, 6, 4})}));
}

TEST(AttentionGradcheck, SeveralTilesPerHead) {
  // 70 rows: two query and key tiles, the second partial.
  Tensor q = leaf({1, 1, 70, 2}), k = leaf({1, 1, 70, 2}), v = leaf({1, 1, 70, 2});
  EXPECT_TRUE(grads_ok([](const Ts& x) { return scaled_dot_product_attention(x[0], x[1], x[2], Tensor(), true); },
                       {q, k, v}));
}

TEST(AttentionBackward, MatchesAutogradThroughComposedOps) {
  // B*H = 1 splits key blocks over threads; B*H = 6 gives threads whole heads.
  const int threads_before = get_num_threads();
  for (Sizes z : {Sizes{1, 1, 130, 130, 16, 16}, Sizes{2, 3, 77, 150, 16, 8}})
    for (bool causal : {false, true})
      for (int threads : {1, 2}) {
        SCOPED_TRACE(::testing::Message() << "B*H " << z.B * z.H << " causal " << causal << " threads " << threads);
        set_num_threads(threads);
        Tensor q = leaf({z.B, z.H, z.Tq, z.D}), k = leaf({z.B, z.H, z.Tk, z.D}), v = leaf({z.B, z.H, z.Tk, z.Dv});
        Tensor w = randn({z.B, z.H, z.Tq, z.Dv}, DType::f64);
        sum(scaled_dot_product_attention(q, k, v, Tensor(), causal) * w).backward();
        Ts flash{q.grad(), k.grad(), v.grad()};
        Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
        sum(composed_attention(q2, k2, v2, causal) * w).backward();
        EXPECT_TRUE(all_close(flash[0], q2.grad(), 1e-9, 1e-11));
        EXPECT_TRUE(all_close(flash[1], k2.grad(), 1e-9, 1e-11));
        EXPECT_TRUE(all_close(flash[2], v2.grad(), 1e-9, 1e-11));
      }
  set_num_threads(threads_before);
}

TEST(AttentionStrided, HeadSplitViewsOfFusedQkvMatchContiguous) {
  // q, k, v as head-split views of one [B, T, 3 H D] projection go into the
  // kernels uncopied; output and gradients must match contiguous inputs.
  const int threads_before = get_num_threads();
  for (Sizes z : {Sizes{1, 1, 70, 70, 8, 8}, Sizes{2, 3, 70, 70, 8, 8}})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << "B*H " << z.B * z.H << " threads " << threads);
      set_num_threads(threads);
      const int64_t C = z.H * z.D;
      Tensor qkv = leaf({z.B, z.Tq, 3 * C});
      auto heads = [&](const Tensor& t, int64_t i) {
        return t.narrow(2, i * C, C).view({z.B, z.Tq, z.H, z.D}).transpose(1, 2);
      };
      Tensor w = randn({z.B, z.H, z.Tq, z.D}, DType::f64);
      Tensor out = scaled_dot_product_attention(heads(qkv, 0), heads(qkv, 1), heads(qkv, 2), Tensor(), true);
      sum(out * w).backward();
      Tensor ref_in = qkv.detach().requires_grad_();
      Tensor ref = scaled_dot_product_attention(heads(ref_in, 0).contiguous(), heads(ref_in, 1).contiguous(),
                                                heads(ref_in, 2).contiguous(), Tensor(), true);
      sum(ref * w).backward();
      EXPECT_TRUE(all_close(out, ref, 1e-12, 1e-12));
      EXPECT_TRUE(all_close(qkv.grad(), ref_in.grad(), 1e-12, 1e-12));
    }
  set_num_threads(threads_before);
}

TEST(AttentionQkvPacked, MatchesAttentionOnHeadSplitViews) {
  const int threads_before = get_num_threads();
  const int64_t B = 2, T = 70, H = 3, D = 8, C = H * D;
  Tensor keep = gt(randn({T, T}), full({}, -1.0));  // bool mask with a few hidden keys
  for (int threads : {1, 2})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " threads " << threads);
      set_num_threads(threads);
      Tensor qkv = leaf({B, T, 3 * C}), w = randn({B, T, C}, DType::f64);
      Tensor out = scaled_dot_product_attention_qkvpacked(qkv, H, keep, causal);
      sum(out * w).backward();
      Tensor ref_in = qkv.detach().requires_grad_();
      auto heads = [&](int64_t i) { return ref_in.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2); };
      Tensor ref = scaled_dot_product_attention(heads(0), heads(1), heads(2), keep, causal);
      ref = ref.transpose(1, 2).reshape({B, T, C});
      sum(ref * w).backward();
      EXPECT_TRUE(all_close(out, ref, 1e-12, 1e-12));
      EXPECT_TRUE(all_close(qkv.grad(), ref_in.grad(), 1e-12, 1e-12));
    }
  set_num_threads(threads_before);
  EXPECT_THROW(scaled_dot_product_attention_qkvpacked(randn({2, 4, 10}), 2), Error);  // 10 not 3 * 2 * D
}

TEST(AttentionBackward, FullyMaskedRowsGetZeroGradient) {
  Tensor q = leaf({1, 1, 6, 4}), k = leaf({1, 1, 5, 4}), v = leaf({1, 1, 5, 4});
  Tensor keep = ones({6, 5}, DType::b8);
  keep = where(eq(arange(6.0, DType::i64).view({6, 1}), full({}, 2, DType::i64)), zeros({}, DType::b8), keep);
  Tensor out = scaled_dot_product_attention(q, k, v, keep);
  sum(out * randn({1, 1, 6, 4}, DType::f64)).backward();
  for (const Tensor& g : {q.grad(), k.grad(), v.grad()}) EXPECT_FALSE(std::isnan(sum(g).item()));
  EXPECT_EQ(abs(q.grad().select(2, 2)).sum().item(), 0.0);
  EXPECT_EQ(abs(out.select(2, 2)).sum().item(), 0.0);
}

TEST(AttentionMemory, NeverHoldsTheScoreMatrix) {
  const int64_t B = 1, H = 2, T = 1024, D = 64;
  Tensor q = randn({B, H, T, D}).requires_grad_(), k = randn({B, H, T, D}).requires_grad_();
  Tensor v = randn({B, H, T, D}).requires_grad_();
  Tensor w = randn({B, H, T, D});
  Allocator* a = cpu_allocator();
  const size_t before = a->stats().allocated;
  a->reset_peak();
  sum(scaled_dot_product_attention(q, k, v, Tensor(), true) * w).backward();
  const size_t peak = a->stats().peak_allocated - before;
  const size_t scores = size_t(B * H * T * T) * 4;  // 8 MB
  // Output, its gradient, dq, dk, dv and the product with w: ~3 MB of [B,H,T,D] tensors.
  EXPECT_LT(peak, scores / 2) << "peak " << peak << " bytes";
}

TEST(AttentionErrors, NameTheOpAndShapes) {
  Tensor q = randn({2, 4, 8, 16}), k = randn({2, 4, 8, 32}), v = randn({2, 4, 8, 16});
  try {
    scaled_dot_product_attention(q, k, v);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "scaled_dot_product_attention: q [2,4,8,16] and k [2,4,8,32] differ in head dim");
  }
  EXPECT_THROW(scaled_dot_product_attention(randn({4, 8, 16}), q, q), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, q, randn({2, 4, 9, 16})), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, q.to(DType::f64), q), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, q, q, ones({8, 9}, DType::b8)), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, q, q, ones({8, 8}, DType::i64)), Error);
  EXPECT_THROW(scaled_dot_product_attention(q.to(DType::i64), q.to(DType::i64), q.to(DType::i64)), Error);
}

// Key ranges (i32 [B, 1, Tq, 2]: row i sees keys lo <= j < hi) give what the
// bool mask they describe gives, forward and backward, across several tiles,
// with empty rows, causal or not, on one or two threads (the tiles outside
// every range are skipped, which must not change anything).
TEST(AttentionKeyRanges, EqualTheBoolMaskTheyDescribe) {
  const int threads_before = get_num_threads();
  const int64_t B = 2, H = 3, Tq = 90, Tk = 150;
  std::vector<int32_t> r;
  std::vector<uint8_t> m;
  Generator gen{uint64_t(::testing::UnitTest::GetInstance()->random_seed())};
  const std::vector<float> u = rand({B * Tq, 2}, TensorOptions(DType::f32), &gen).to_vector<float>();
  for (int64_t i = 0; i < B * Tq; ++i) {
    int32_t lo = int32_t(u[size_t(2 * i)] * Tk), hi = lo + int32_t(u[size_t(2 * i + 1)] * (Tk - lo + 1));
    if (i % 17 == 5) hi = lo;  // an empty row
    r.push_back(lo), r.push_back(hi);
    for (int64_t j = 0; j < Tk; ++j) m.push_back(j >= lo && j < hi);
  }
  const Tensor ranges = tensor(r, {B, 1, Tq, 2}), mask = tensor(m, {B, 1, Tq, Tk}).to(DType::b8);
  for (bool causal : {false, true})
    for (int threads : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " threads " << threads);
      set_num_threads(threads);
      Tensor q = leaf({B, H, Tq, 8}), k = leaf({B, H, Tk, 8}), v = leaf({B, H, Tk, 8});
      Tensor w = randn({B, H, Tq, 8}, DType::f64);
      const Tensor out = scaled_dot_product_attention(q, k, v, ranges, causal);
      EXPECT_TRUE(all_close(out, naive_attention(q, k, v, mask, causal, 1.0 / std::sqrt(8.0)), 1e-9, 1e-11));
      sum(out * w).backward();
      Ts by_ranges{q.grad(), k.grad(), v.grad()};
      Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
      sum(scaled_dot_product_attention(q2, k2, v2, mask, causal) * w).backward();
      EXPECT_TRUE(all_close(by_ranges[0], q2.grad(), 1e-12, 1e-12));
      EXPECT_TRUE(all_close(by_ranges[1], k2.grad(), 1e-12, 1e-12));
      EXPECT_TRUE(all_close(by_ranges[2], v2.grad(), 1e-12, 1e-12));
    }
  set_num_threads(threads_before);
  // Half types read the same ranges.
  Tensor q = randn({B, H, Tq, 8}), k = randn({B, H, Tk, 8}), v = randn({B, H, Tk, 8});
  EXPECT_TRUE(all_close(scaled_dot_product_attention(q.to(DType::bf16), k.to(DType::bf16), v.to(DType::bf16), ranges)
                            .to(DType::f32),
                        scaled_dot_product_attention(q.to(DType::bf16), k.to(DType::bf16), v.to(DType::bf16), mask)
                            .to(DType::f32),
                        1e-6, 1e-6));
  // Ranges of the wrong shape are named.
  EXPECT_THROW(scaled_dot_product_attention(q, k, v, tensor(r, {B, Tq, 2})), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, k, v, zeros({B, 1, Tq, 3}, DType::i32)), Error);
}

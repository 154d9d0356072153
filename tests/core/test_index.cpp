// embedding, index_select, gather and scatter_add: forward against naive
// loops on random inputs, gradients by finite differences, the determinism of
// the scatter-add backward, and index errors.
#include "helpers.h"

using namespace fm;
using fm::test::all_close;
using fm::test::coords;
using fm::test::error_of;
using fm::test::grads_ok;
using fm::test::leaf;
using fm::test::linear;
using Ts = std::vector<Tensor>;

namespace {

std::vector<double> naive_index_select(const Tensor& x, int d, const Tensor& index) {
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  const std::vector<double> xv = x.to_vector<double>();
  Shape out = x.shape();
  out[d] = int64_t(idx.size());
  std::vector<double> r;
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> c = coords(i, out);
    c[size_t(d)] = idx[size_t(c[size_t(d)])];
    r.push_back(xv[size_t(linear(c, x.shape()))]);
  }
  return r;
}

std::vector<double> naive_gather(const Tensor& x, int d, const Tensor& index) {
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  const std::vector<double> xv = x.to_vector<double>();
  std::vector<double> r;
  for (int64_t i = 0; i < index.numel(); ++i) {
    std::vector<int64_t> c = coords(i, index.shape());
    c[size_t(d)] = idx[size_t(i)];
    r.push_back(xv[size_t(linear(c, x.shape()))]);
  }
  return r;
}

// Sums in row-major order of the index, in the element type T.
template <class T>
std::vector<T> naive_scatter_add(const Tensor& x, int d, const Tensor& index, const Tensor& src) {
  const std::vector<int64_t> idx = index.to_vector<int64_t>();
  const std::vector<T> sv = src.to_vector<T>();
  std::vector<T> r = x.to_vector<T>();
  for (int64_t i = 0; i < index.numel(); ++i) {
    std::vector<int64_t> c = coords(i, index.shape());
    const T v = sv[size_t(linear(c, src.shape()))];
    c[size_t(d)] = idx[size_t(i)];
    r[size_t(linear(c, x.shape()))] += v;
  }
  return r;
}

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

}  // namespace

TEST(IndexSelect, MatchesNaive) {
  Tensor x = randn({4, 5, 6}, DType::f64);
  Tensor xt = randn({6, 5, 4}, DType::f64).permute({2, 1, 0});  // strided
  for (DType it : {DType::i32, DType::i64})
    for (int d = 0; d < 3; ++d)
      for (const Tensor& in : {x, xt}) {
        Tensor idx = randint(0, in.size(d), {7}, it);  // repeats likely
        EXPECT_TRUE(all_close(index_select(in, d, idx), naive_index_select(in, d, idx), 0, 0)) << d;
        EXPECT_TRUE(all_close(index_select(in, d - 3, idx), naive_index_select(in, d, idx), 0, 0)) << d - 3;
      }
  // Any dtype moves; a 0-D index keeps the dim; an empty index gives an empty dim.
  Tensor ints = randint(-50, 50, {3, 4}, DType::i64);
  Tensor idx = tensor(std::vector<int64_t>{3, 0, 3});
  EXPECT_TRUE(all_close(index_select(ints, 1, idx), naive_index_select(ints, 1, idx), 0, 0));
  Tensor h = x.to(DType::bf16);
  EXPECT_TRUE(all_close(index_select(h, 2, idx), naive_index_select(h, 2, idx), 0, 0));
  EXPECT_EQ(index_select(x, 1, scalar_tensor(2, DType::i64)).shape(), Shape({4, 1, 6}));
  EXPECT_EQ(index_select(x, 1, zeros({0}, DType::i64)).shape(), Shape({4, 0, 6}));
}

TEST(IndexSelect, Gradients) {
  Tensor x = leaf({4, 5, 3});
  Tensor idx = tensor(std::vector<int64_t>{2, 0, 2, 2, 1});
  for (int d = 0; d < 3; ++d)
    EXPECT_TRUE(grads_ok([d, idx](const Ts& v) { return index_select(v[0], d, idx); }, {x})) << d;
  Tensor idx32 = tensor(std::vector<int32_t>{4, 4, 0});
  EXPECT_TRUE(grads_ok([idx32](const Ts& v) { return index_select(v[0].transpose(0, 1), 0, idx32); }, {x}));
}

TEST(Embedding, ForwardAndPaddingIdx) {
  Tensor w = randn({10, 6});
  Tensor ids = randint(0, 10, {3, 4}, DType::i32);
  Tensor out = embedding(ids, w);
  EXPECT_EQ(out.shape(), Shape({3, 4, 6}));
  EXPECT_TRUE(all_close(out.reshape({12, 6}), naive_index_select(w, 0, ids.reshape({12})), 0, 0));
  EXPECT_EQ(embedding(scalar_tensor(3, DType::i64), w).shape(), Shape({6}));

  // The padding row is looked up but gets no gradient.
  Tensor wl = randn({5, 3}).requires_grad_(true);
  Tensor pid = tensor(std::vector<int64_t>{1, 0, 1, 4, 0});
  Tensor y = embedding(pid, wl, 0);
  EXPECT_TRUE(all_close(y.select(0, 1), wl.select(0, 0), 0, 0));
  y.sum().backward();
  EXPECT_TRUE(all_close(wl.grad(), {0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1}));
}

TEST(Embedding, Gradients) {
  Tensor w = leaf({6, 4});
  Tensor ids = tensor(std::vector<int64_t>{5, 1, 1, 0, 5, 5}, {2, 3});
  EXPECT_TRUE(grads_ok([ids](const Ts& v) { return embedding(ids, v[0]); }, {w}));
  EXPECT_TRUE(grads_ok([ids](const Ts& v) { return embedding(ids, v[0], 3); }, {w}));  // 3 unused
}

// The weight gradient sums repeated ids in id order whatever the thread
// count: bit-identical to a sequential float loop.
TEST(Embedding, BackwardIsDeterministic) {
  const int64_t vocab = 40, width = 300;
  Tensor ids = randint(0, vocab, {8, 256}, DType::i64);
  Tensor g = randn({8, 256, width});
  const std::vector<float> expected =
      naive_scatter_add<float>(zeros({vocab, width}), 0, ids.reshape({2048, 1}).expand({2048, width}),
                               g.reshape({2048, width}));
  const int saved = get_num_threads();
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    Tensor w = randn({vocab, width}).requires_grad_(true);
    embedding(ids, w).backward(g);
    EXPECT_EQ(w.grad().to_vector<float>(), expected) << threads << " threads";
  }
  set_num_threads(saved);
}

TEST(Gather, MatchesNaive) {
  Tensor x = randn({4, 5, 6}, DType::f64);
  Tensor xt = randn({6, 5, 4}, DType::f64).permute({2, 1, 0});
  for (int d = 0; d < 3; ++d)
    for (const Tensor& in : {x, xt}) {
      Shape s{3, 4, 5};  // smaller than x but in dim d, which may be larger
      s[d] = 8;
      const DType it = d == 1 ? DType::i32 : DType::i64;
      Tensor idx = randint(0, in.size(d), s, it);
      EXPECT_TRUE(all_close(gather(in, d, idx), naive_gather(in, d, idx), 0, 0)) << d;
      Tensor strided = randint(0, in.size(d), {s[2], s[1], s[0]}, it).permute({2, 1, 0});
      EXPECT_TRUE(all_close(gather(in, d - 3, strided), naive_gather(in, d, strided), 0, 0)) << d;
    }
  Tensor ints = randint(0, 100, {3, 4}, DType::i32);
  Tensor idx = randint(0, 4, {3, 2}, DType::i64);
  EXPECT_TRUE(all_close(gather(ints, 1, idx), naive_gather(ints, 1, idx), 0, 0));
}

TEST(Gather, Gradients) {
  Tensor x = leaf({3, 4, 5});
  Tensor idx = randint(0, 4, {2, 6, 3}, DType::i64);  // repeats along dim 1
  EXPECT_TRUE(grads_ok([idx](const Ts& v) { return gather(v[0], 1, idx); }, {x}));
  Tensor idx0 = randint(0, 3, {5, 4, 5}, DType::i32);
  EXPECT_TRUE(grads_ok([idx0](const Ts& v) { return gather(v[0], 0, idx0); }, {x}));
  Tensor idx2 = randint(0, 5, {3, 1, 7}, DType::i64);
  EXPECT_TRUE(grads_ok([idx2](const Ts& v) { return gather(v[0].transpose(0, 1), -1, idx2); }, {x}));
}

TEST(ScatterAdd, MatchesNaive) {
  for (int d = 0; d < 3; ++d) {
    Tensor x = randn({4, 5, 6}, DType::f64);
    Shape s{3, 4, 5};
    s[d] = 9;  // more sources than targets along d: repeats
    Tensor idx = randint(0, x.size(d), s, DType::i64);
    Tensor src = randn({10, 10, 11}, DType::f64).permute({2, 1, 0});  // strided, larger than index
    Tensor out = scatter_add(x, d, idx, src);
    EXPECT_TRUE(all_close(out, naive_scatter_add<double>(x, d, idx, src), 0, 0)) << d;
    EXPECT_TRUE(all_close(scatter_add(x, d - 3, idx, src), out, 0, 0));
  }
  Tensor xi = zeros({5}, DType::i32);
  Tensor out = scatter_add(xi, 0, tensor(std::vector<int64_t>{1, 1, 4}), tensor(std::vector<int32_t>{2, 3, 7}));
  EXPECT_EQ(out.to_vector<int32_t>(), (std::vector<int32_t>{0, 5, 0, 0, 7}));
  EXPECT_TRUE(all_close(xi, {0, 0, 0, 0, 0}));  // x itself is unchanged
}

TEST(ScatterAdd, GradientsAndDeterminism) {
  Tensor x = leaf({4, 5}), src = leaf({6, 5});
  Tensor idx = randint(0, 4, {6, 3}, DType::i64);
  EXPECT_TRUE(grads_ok([idx](const Ts& v) { return scatter_add(v[0], 0, idx, v[1]); }, {x, src}));
  Tensor idx1 = randint(0, 5, {4, 7}, DType::i32);
  EXPECT_TRUE(grads_ok([idx1](const Ts& v) { return scatter_add(v[0], 1, idx1, v[1].t()); }, {x, leaf({7, 4})}));

  Tensor big_idx = randint(0, 16, {4096, 64}, DType::i64);
  Tensor big_src = randn({4096, 64});
  const std::vector<float> expected = naive_scatter_add<float>(zeros({16, 64}), 0, big_idx, big_src);
  const int saved = get_num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    EXPECT_EQ(scatter_add(zeros({16, 64}), 0, big_idx, big_src).to_vector<float>(), expected);
  }
  set_num_threads(saved);
}

TEST(Index, Errors) {
  Tensor w = zeros({10, 4});
  EXPECT_EQ(error_of([&] { embedding(tensor(std::vector<int64_t>{0, 10, 3}), w); }),
            "embedding: index 10 out of range for a weight of 10 rows");
  EXPECT_EQ(error_of([&] { embedding(tensor(std::vector<int32_t>{-1}), w); }),
            "embedding: index -1 out of range for a weight of 10 rows");
  EXPECT_EQ(error_of([&] { embedding(tensor(std::vector<float>{1}), w); }),
            "embedding: indices must be int32 or int64, got float32");
  EXPECT_EQ(error_of([&] { embedding(tensor(std::vector<int64_t>{1}), w, 10); }),
            "embedding: padding_idx 10 out of range for a weight of 10 rows");
  EXPECT_EQ(error_of([&] { index_select(zeros({3, 5}), 1, tensor(std::vector<int64_t>{5})); }),
            "index_select: index 5 out of range for dim 1 of size 5");
  EXPECT_EQ(error_of([&] { index_select(zeros({3, 5}), 0, zeros({2, 2}, DType::i64)); }),
            "index_select: index must be 0-D or 1-D, got shape [2,2]");
  EXPECT_EQ(error_of([&] { gather(zeros({3, 5}), 0, full({2, 5}, 3, DType::i64)); }),
            "gather: index 3 out of range for dim 0 of size 3");
  EXPECT_EQ(error_of([&] { gather(zeros({3, 5}), 0, zeros({2, 6}, DType::i64)); }),
            "gather: index of shape [2,6] is larger than the input of shape [3,5] in dim 1");
  EXPECT_EQ(error_of([&] { gather(zeros({3, 5}), 0, zeros({2}, DType::i64)); }),
            "gather: index of shape [2] and input of shape [3,5] differ in dims");
  EXPECT_EQ(error_of([&] { scatter_add(zeros({3}), 0, zeros({2}, DType::i64), zeros({2}, DType::f64)); }),
            "scatter_add: src is float64 but the input is float32 (they must match)");
  EXPECT_EQ(error_of([&] { scatter_add(zeros({3}), 0, zeros({4}, DType::i64), zeros({2})); }),
            "scatter_add: index of shape [4] is larger than src of shape [2] in dim 0");
}

// matmul and linear: shapes, batch broadcasting and strides are worked out
// here so the backends see one strided batched GEMM.
#include "fm/ops/linalg.h"

#include <optional>

#include "fm/autocast.h"
#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

// A [rows, cols] matrix view as the GEMM sees it: stored row-major with
// leading dimension ld, possibly transposed.
struct MatrixView {
  bool trans = false;
  int64_t ld = 0;
};

std::optional<MatrixView> as_gemm_matrix(int64_t rows, int64_t cols, int64_t s_row, int64_t s_col) {
  if (cols == 1) s_col = 1;  // strides of size-1 dims do not matter
  if (rows == 1) s_row = cols;
  if (s_col == 1 && s_row >= cols) return MatrixView{false, s_row};
  if (s_row == 1 && s_col >= rows) return MatrixView{true, s_col};
  return std::nullopt;
}

// One stride for the flattened batch dims [0, nb), if they can be flattened.
std::optional<int64_t> batch_stride(const Tensor& t, int nb) {
  std::optional<int64_t> inner;  // stride of the innermost non-trivial batch dim
  int64_t expected = -1;
  for (int i = nb - 1; i >= 0; --i) {
    const int64_t size = t.shape()[i], st = t.strides()[i];
    if (size == 1) continue;
    if (!inner) {
      inner = st;
      expected = st * size;
    } else {
      if (st != expected) return std::nullopt;
      expected = st * size;
    }
  }
  return inner.value_or(0);
}

// [.., M, K] @ [.., K, N] with both operands at least 2-D.
Tensor matmul_nd(const Tensor& a_in, const Tensor& b_in) {
  const int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  const DType t = promote(a_in.dtype(), b_in.dtype());
  if (!is_floating(t)) error("matmul: needs floating tensors, got ", a_in.dtype(), " and ", b_in.dtype());
  Tensor a = a_in.dtype() == t ? a_in : a_in.to(t);
  Tensor b = b_in.dtype() == t ? b_in : b_in.to(t);

  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(batch_a, batch_b, "matmul");
  const int64_t nbatch = batch.numel();
  const int nb = batch.size();

  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = make_tensor(out_shape, t, a.device());

  kernels::GemmArgs args;
  args.m = M;
  args.n = N;
  args.k = K;
  args.ldc = N;
  args.stride_c = M * N;
  args.batch = nbatch;
  if (out.numel() == 0) return out;
  if (K == 0) return out.fill_(0.0);

  // A 2-D right operand with a row-major left one: fold the batch into M.
  if (b.dim() == 2 && nb > 0 && a.dim() > 2) {
    Tensor a2 = a.reshape({-1, K});
    if (auto va = as_gemm_matrix(a2.size(0), K, a2.stride(0), a2.stride(1)); va && !va->trans) {
      auto vb = as_gemm_matrix(K, N, b.stride(0), b.stride(1));
      Tensor bb = vb ? b : b.contiguous();
      if (!vb) vb = MatrixView{false, N};
      args.m = a2.size(0);
      args.batch = 1;
      args.lda = va->ld;
      args.ldb = vb->ld;
      args.trans_a = false;
      args.trans_b = vb->trans;
      kernels::gemm(a.device(), args, a2, bb, out);
      return out;
    }
  }

  auto prepare = [&](Tensor x, int64_t rows, int64_t cols, bool* trans, int64_t* ld, int64_t* bstride) {
    Shape full = batch;
    full.push_back(rows);
    full.push_back(cols);
    x = x.expand(full);
    auto mv = as_gemm_matrix(rows, cols, x.stride(-2), x.stride(-1));
    auto bs = batch_stride(x, nb);
    if (!mv || !bs) {
      x = x.contiguous();
      mv = MatrixView{false, cols};
      bs = rows * cols;
    }
    *trans = mv->trans;
    *ld = mv->ld;
    *bstride = *bs;
    return x;
  };
  Tensor aa = prepare(a, M, K, &args.trans_a, &args.lda, &args.stride_a);
  Tensor bb = prepare(b, K, N, &args.trans_b, &args.ldb, &args.stride_b);
  kernels::gemm(a.device(), args, aa, bb, out);
  return out;
}

Tensor matmul_recorded(const Tensor& a, const Tensor& b) {
  Tensor out;
  {
    NoGradGuard ng;
    out = matmul_nd(a, b);
  }
  if (any_requires_grad({a, b}))
    record("matmul", out, {a, b}, [a, b](const Tensor& g, const Node& n) {
      Grads r(2);
      if (n.needs_input_grad(0)) r[0] = sum_to(matmul_nd(g, b.transpose(-2, -1)), a.shape()).to(a.dtype());
      if (n.needs_input_grad(1)) r[1] = sum_to(matmul_nd(a.transpose(-2, -1), g), b.shape()).to(b.dtype());
      return r;
    });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = autocast(a_in), b = autocast(b_in);
  if (a.device() != b.device())
    error("matmul: operands on different devices (", a.device().str(), " and ", b.device().str(), ")");
  if (a.dim() == 0 || b.dim() == 0) error("matmul: both operands need at least 1 dim, got ", a.shape(), " @ ", b.shape());
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  if (ka != kb) error("matmul: ", a.shape(), " @ ", b.shape(), ": inner dimensions ", ka, " and ", kb, " differ");
  if (a.dim() == 1 && b.dim() == 1) return matmul_recorded(a.unsqueeze(0), b.unsqueeze(1)).view({});
  if (a.dim() == 1) return matmul_recorded(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_recorded(a, b.unsqueeze(1)).squeeze(-1);
  return matmul_recorded(a, b);
}

Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  const Tensor x = autocast(x_in), weight = autocast(weight_in), bias = autocast(bias_in);
  if (weight.dim() != 2) error("linear: weight must be [out, in], got ", weight.shape());
  if (x.dim() == 0 || x.size(-1) != weight.size(1))
    error("linear: input ", x.shape(), " does not match weight ", weight.shape(), " (in features ", weight.size(1), ")");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
    error("linear: bias ", bias.shape(), " does not match weight ", weight.shape());
  if (x.device() != weight.device() || (bias.defined() && bias.device() != x.device()))
    error("linear: input, weight and bias must be on one device");
  const int64_t in = weight.size(1), outf = weight.size(0);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = outf;

  Tensor out;
  {
    NoGradGuard ng;
    Tensor x2 = x.reshape({-1, in});
    const DType t = promote(x.dtype(), weight.dtype());
    if (x2.dtype() != t) x2 = x2.to(t);
    if (!x2.is_contiguous()) x2 = x2.contiguous();
    Tensor w = weight.dtype() == t ? weight : weight.to(t);
    auto vw = as_gemm_matrix(outf, in, w.stride(0), w.stride(1));
    if (!vw) {
      w = w.contiguous();
      vw = MatrixView{false, in};
    }
    out = make_tensor({x2.size(0), outf}, t, x.device());
    kernels::GemmArgs args;
    args.m = x2.size(0);
    args.n = outf;
    args.k = in;
    args.lda = in;
    args.trans_b = !vw->trans;  // x @ W^T
    args.ldb = vw->ld;
    args.ldc = outf;
    if (bias.defined()) {
      // The bias is the GEMM's C input (beta = 1): no separate pass.
      kernels::copy(x.device(), out, bias.to(t).expand(out.shape()));
      args.beta = 1.0;
    }
    if (out.numel() > 0) {
      if (in == 0) out.fill_(0.0);
      else kernels::gemm(x.device(), args, x2, w, out);
    }
    out = out.view(out_shape);
  }
  if (any_requires_grad({x, weight, bias}))
    record("linear", out, {x, weight, bias}, [x, weight, bias, in, outf](const Tensor& g, const Node& n) {
      Tensor g2 = g.reshape({-1, outf});
      Grads r(3);
      if (n.needs_input_grad(0)) r[0] = matmul_nd(g2, weight).view(x.shape()).to(x.dtype());
      if (n.needs_input_grad(1)) r[1] = matmul_nd(g2.t(), x.reshape({-1, in})).to(weight.dtype());
      if (n.needs_input_grad(2)) r[2] = sum(g2, {0}).to(bias.dtype());
      return r;
    });
  return out;
}

}  // namespace fm

// The gemm slot and the fused linear-layer GEMMs, through cuBLASLt.
//
// libfm's matrices are row-major and cuBLASLt's column-major: a row-major
// r x c matrix is the column-major c x r matrix of the same memory, so
// row-major C = op(A) @ op(B) runs as column-major C^T = op(B)^T @ op(A)^T,
// i.e. with the operands swapped and no data moved.
#include <algorithm>
#include <climits>
#include <sstream>

#include "blas.h"
#include "fm/cuda/blas.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/tensor_impl.h"

namespace fm::cuda {
namespace {

using kernels::GemmArgs;

bool is_float(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }

// A stored row-major rows x cols matrix in cuBLASLt's terms.
blas::Layout stored(int64_t rows, int64_t cols, int64_t ld, int64_t batch_stride, int64_t batch) {
  blas::Layout l{uint64_t(cols), uint64_t(rows), ld, batch > 1 ? batch_stride : 0};
  if (rows == 1) l.ld = std::max(ld, cols);  // a single column: cuBLASLt checks its stride, never uses it
  return l;
}

struct Call {
  blas::Problem p;
  blas::Operands ops;
};

Call make_call(const GemmArgs& g, DType t, int device, const void* a, const void* b, void* c) {
  const int64_t es = int64_t(itemsize(t));
  Call call;
  blas::Problem& p = call.p;
  p.dtype = t;
  p.trans_a = g.trans_b;
  p.trans_b = g.trans_a;
  p.a = stored(g.trans_b ? g.n : g.k, g.trans_b ? g.k : g.n, g.ldb, g.stride_b, g.batch);
  p.b = stored(g.trans_a ? g.k : g.m, g.trans_a ? g.m : g.k, g.lda, g.stride_a, g.batch);
  p.c = stored(g.m, g.n, g.ldc, g.stride_c, g.batch);
  p.batch = int32_t(g.batch);
  p.align_a = blas::alignment(b, {p.a.ld * es, p.a.batch_stride * es});
  p.align_b = blas::alignment(a, {p.b.ld * es, p.b.batch_stride * es});
  p.align_c = blas::alignment(c, {p.c.ld * es, p.c.batch_stride * es});
  p.tf32 = t == DType::f32 && allow_tf32();
  p.device = device;
  call.ops = {b, a, c, nullptr, nullptr, g.alpha, g.beta};
  return call;
}

std::string describe(const char* fn, const GemmArgs& g, DType t) {
  std::ostringstream os;
  os << fn << " (" << t << ", m=" << g.m << " n=" << g.n << " k=" << g.k << " batch=" << g.batch
     << " trans_a=" << g.trans_a << " trans_b=" << g.trans_b << " lda=" << g.lda << " ldb=" << g.ldb
     << " ldc=" << g.ldc << " batch strides=" << g.stride_a << "," << g.stride_b << "," << g.stride_c << ")";
  return os.str();
}

void gemm(const GemmArgs& g, const Tensor& a, const Tensor& b, const Tensor& c) {
  if (a.dtype() != b.dtype() || a.dtype() != c.dtype())
    error("gemm: dtypes differ (", a.dtype(), ", ", b.dtype(), ", ", c.dtype(), ")");
  if (!is_float(c.dtype())) error("gemm: needs a floating dtype, got ", c.dtype());
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  if (g.k <= 0) {  // C = beta * C: nothing to multiply
    Tensor cv = make_view(c, {g.batch, g.m, g.n}, {g.stride_c, g.ldc, 1}, c.storage_offset());
    if (g.beta == 0) kernels::fill(c.device(), cv, 0.0);
    else if (g.beta != 1) kernels::copy(c.device(), cv, cv * g.beta);
    return;
  }
  if (g.batch > INT32_MAX) error(describe("gemm", g, c.dtype()), ": batch too large for cuBLASLt");
  Call call = make_call(g, c.dtype(), c.device().index, a.data_ptr(), b.data_ptr(), c.data_ptr());
  blas::matmul(call.p, call.ops, [&] { return describe("gemm", g, c.dtype()); });
}

// ---- fused linear GEMMs

// A 2-D tensor as a GEMM operand: row-major storage with leading dimension
// ld, or the transpose of such storage (trans).
struct View {
  bool trans = false;
  int64_t ld = 0;
};

View operand(const char* fn, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  if (t.dim() != 2 || t.size(0) != rows || t.size(1) != cols)
    error(fn, ": ", name, " must be [", rows, ", ", cols, "], got ", t.shape());
  int64_t s_row = t.stride(0), s_col = t.stride(1);
  if (cols == 1) s_col = 1;  // strides of size-1 dims do not matter
  if (rows == 1) s_row = cols;
  if (s_col == 1 && s_row >= cols) return {false, s_row};
  if (s_row == 1 && s_col >= rows) return {true, s_col};
  error(fn, ": ", name, " ", t.shape(), " with strides ", t.strides(), " has no unit stride");
}

// Outputs (and the GELU input) must be plain row-major.
int64_t output_ld(const char* fn, const char* name, const Tensor& t, int64_t rows, int64_t cols) {
  const View v = operand(fn, name, t, rows, cols);
  if (v.trans) error(fn, ": ", name, " must have a unit column stride, got strides ", t.strides());
  return v.ld;
}

void check_vector(const char* fn, const char* name, const Tensor& t, int64_t n) {
  if (t.dim() != 1 || t.size(0) != n) error(fn, ": ", name, " must be [", n, "], got ", t.shape());
  if (n > 1 && t.stride(0) != 1) error(fn, ": ", name, " must be contiguous");
}

void check_same(const char* fn, std::initializer_list<const Tensor*> ts) {
  const Tensor& first = **ts.begin();
  if (!first.defined()) error(fn, ": the output is undefined");
  if (!first.device().is_cuda()) error(fn, ": needs CUDA tensors, got ", first.device().str());
  if (!is_float(first.dtype())) error(fn, ": needs a floating dtype, got ", first.dtype());
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (t->device() != first.device()) error(fn, ": tensors on ", first.device().str(), " and ", t->device().str());
    if (t->dtype() != first.dtype()) error(fn, ": dtypes differ (", first.dtype(), ", ", t->dtype(), ")");
  }
}

int64_t aux_ld(const char* fn, const Tensor& pre, int64_t rows, int64_t cols) {
  const int64_t ld = output_ld(fn, "pre_gelu", pre, rows, cols);
  if (ld % 8 != 0) error(fn, ": pre_gelu's row stride ", ld, " is not a multiple of 8");
  return ld;
}

void run(const char* fn, const GemmArgs& g, Call& call) {
  blas::matmul(call.p, call.ops, [&] { return describe(fn, g, call.p.dtype); });
}

void zero(const Tensor& t) {
  if (t.defined() && t.numel() > 0) kernels::fill(t.device(), t, 0.0);
}

}  // namespace

void linear_epilogue(const Tensor& out, const Tensor& x2d, const Tensor& weight, const Tensor& bias, Epilogue e,
                     const Tensor& pre_gelu) {
  const char* fn = "linear_epilogue";
  if (x2d.dim() != 2 || weight.dim() != 2)
    error(fn, ": x2d ", x2d.shape(), " and weight ", weight.shape(), " must be 2-D");
  const int64_t M = x2d.size(0), K = x2d.size(1), N = weight.size(0);
  check_same(fn, {&out, &x2d, &weight, &bias, &pre_gelu});
  const View vx = operand(fn, "x2d", x2d, M, K), vw = operand(fn, "weight", weight, N, K);
  const bool gelu = e == Epilogue::bias_gelu, aux = gelu && pre_gelu.defined();
  GemmArgs g;
  g.m = M, g.n = N, g.k = K;
  g.trans_a = vx.trans, g.lda = vx.ld;
  g.trans_b = !vw.trans, g.ldb = vw.ld;  // x @ W^T
  g.ldc = output_ld(fn, "out", out, M, N);
  if (bias.defined()) check_vector(fn, "bias", bias, N);
  const int64_t pre_ld = aux ? aux_ld(fn, pre_gelu, M, N) : 0;
  if (M == 0 || N == 0) return;
  if (K == 0) error(fn, ": needs in features > 0");

  Call call = make_call(g, out.dtype(), out.device().index, x2d.data_ptr(), weight.data_ptr(), out.data_ptr());
  if (bias.defined()) {
    call.p.epilogue = !gelu ? CUBLASLT_EPILOGUE_BIAS
                      : aux ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS
                            : CUBLASLT_EPILOGUE_GELU_BIAS;
    call.ops.bias = bias.data_ptr();
    call.p.align_bias = blas::alignment(call.ops.bias, {});
  } else if (gelu) {
    call.p.epilogue = aux ? CUBLASLT_EPILOGUE_GELU_AUX : CUBLASLT_EPILOGUE_GELU;
  }
  if (aux) {
    call.ops.aux = pre_gelu.data_ptr();
    call.p.aux_ld = pre_ld;
    call.p.align_aux = blas::alignment(call.ops.aux, {pre_ld * int64_t(pre_gelu.itemsize())});
  }
  run(fn, g, call);
}

void linear_backward_weight(const Tensor& dweight, const Tensor& dbias, const Tensor& dout, const Tensor& x2d,
                            bool accumulate) {
  const char* fn = "linear_backward_weight";
  if (dout.dim() != 2 || x2d.dim() != 2) error(fn, ": dout ", dout.shape(), " and x2d ", x2d.shape(), " must be 2-D");
  const int64_t M = dout.size(0), N = dout.size(1), K = x2d.size(1);
  check_same(fn, {&dweight, &dbias, &dout, &x2d});
  const View vd = operand(fn, "dout", dout, M, N), vx = operand(fn, "x2d", x2d, M, K);
  GemmArgs g;  // dW = dout^T @ x
  g.m = N, g.n = K, g.k = M;
  g.trans_a = !vd.trans, g.lda = vd.ld;
  g.trans_b = vx.trans, g.ldb = vx.ld;
  g.ldc = output_ld(fn, "dweight", dweight, N, K);
  g.beta = accumulate ? 1.0 : 0.0;
  if (dbias.defined()) check_vector(fn, "dbias", dbias, N);
  if (N == 0) return;
  if (M == 0) {  // empty sums
    if (!accumulate) zero(dweight);
    zero(dbias);
    return;
  }
  if (K == 0) {
    if (dbias.defined()) error(fn, ": a fused bias gradient needs in features > 0");
    return;
  }

  Call call = make_call(g, dweight.dtype(), dweight.device().index, dout.data_ptr(), x2d.data_ptr(),
                        dweight.data_ptr());
  if (dbias.defined()) {
    call.p.epilogue = CUBLASLT_EPILOGUE_BGRADB;  // reduces op(B) = dout over the GEMM's k = M rows
    call.ops.bias = dbias.data_ptr();
    call.p.align_bias = blas::alignment(call.ops.bias, {});
  }
  run(fn, g, call);
}

void linear_backward_gelu_input(const Tensor& dpre, const Tensor& dbias, const Tensor& dout, const Tensor& weight,
                                const Tensor& pre_gelu) {
  const char* fn = "linear_backward_gelu_input";
  if (dout.dim() != 2 || weight.dim() != 2)
    error(fn, ": dout ", dout.shape(), " and weight ", weight.shape(), " must be 2-D");
  if (!pre_gelu.defined()) error(fn, ": needs pre_gelu");
  const int64_t M = dout.size(0), N = dout.size(1), K = weight.size(1);
  check_same(fn, {&dpre, &dbias, &dout, &weight, &pre_gelu});
  const View vd = operand(fn, "dout", dout, M, N), vw = operand(fn, "weight", weight, N, K);
  GemmArgs g;  // dh = dout @ W, then * gelu'(pre)
  g.m = M, g.n = K, g.k = N;
  g.trans_a = vd.trans, g.lda = vd.ld;
  g.trans_b = vw.trans, g.ldb = vw.ld;
  g.ldc = output_ld(fn, "dpre", dpre, M, K);
  const int64_t pre_ld = aux_ld(fn, pre_gelu, M, K);
  if (dbias.defined()) check_vector(fn, "dbias", dbias, K);
  if (K == 0) return;
  if (M == 0 || N == 0) {  // dh is zero, so are dpre and its bias gradient
    zero(dpre);
    zero(dbias);
    return;
  }

  Call call = make_call(g, dpre.dtype(), dpre.device().index, dout.data_ptr(), weight.data_ptr(), dpre.data_ptr());
  call.p.epilogue = dbias.defined() ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
  call.ops.aux = pre_gelu.data_ptr();
  call.p.aux_ld = pre_ld;
  call.p.align_aux = blas::alignment(call.ops.aux, {pre_ld * int64_t(pre_gelu.itemsize())});
  if (dbias.defined()) {
    call.ops.bias = dbias.data_ptr();
    call.p.align_bias = blas::alignment(call.ops.bias, {});
  }
  run(fn, g, call);
}

namespace {
FM_REGISTER_KERNEL(kernels::gemm, DeviceType::cuda, gemm);
}  // namespace

}  // namespace fm::cuda

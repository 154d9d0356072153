// Element-wise ops: broadcasting, type promotion and the autograd formulas.
// The math itself is in fm/kernels/functors.h, run by each backend.
#include "fm/ops/elementwise.h"

#include <cmath>

#include "fm/autograd.h"
#include "fm/factory.h"
#include "fm/kernels/core.h"
#include "fm/ops/reduce.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

using Grads = std::vector<Tensor>;

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    error(op, ": operands on different devices (", a.device().str(), " and ", b.device().str(), ")");
}

// a and b as `t` views broadcast to `shape` (converted when needed, no graph).
Tensor operand(const Tensor& x, DType t, const Shape& shape) {
  NoGradGuard ng;
  return (x.dtype() == t ? x : x.to(t)).expand(shape);
}

// Runs a binary kernel without recording anything.
Tensor binary_raw(BinaryOp op, const char* name, const Tensor& a, const Tensor& b, DType t) {
  check_same_device(name, a, b);
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = make_tensor(s, t, a.device());
  kernels::binary(a.device(), op, out, operand(a, t, s), operand(b, t, s));
  return out;
}

DType arith_dtype(const Tensor& a, const Tensor& b, bool to_float) {
  DType t = promote(a.dtype(), b.dtype());
  if (t == DType::b8 || (to_float && !is_floating(t))) t = DType::f32;
  return t;
}

// The gradient reaching input x: summed over broadcast dims, in x's dtype.
Tensor reduce_grad(const Tensor& g, const Tensor& x) {
  Tensor r = sum_to(g, x.shape());
  return r.dtype() == x.dtype() ? r : r.to(x.dtype());
}

Tensor unary_raw(UnaryOp op, const Tensor& x, double p0 = 0, double p1 = 0) {
  Tensor out = make_tensor(x.shape(), x.dtype(), x.device());
  kernels::unary(x.device(), op, out, x, p0, p1);
  return out;
}

// Float math on an integer tensor runs in f32, as PyTorch.
Tensor as_float(const Tensor& x) { return is_floating(x.dtype()) ? x : x.to(DType::f32); }

Tensor compare_op(CompareOp op, const char* name, const Tensor& a, const Tensor& b) {
  check_same_device(name, a, b);
  DType t = promote(a.dtype(), b.dtype());
  Shape s = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = make_tensor(s, DType::b8, a.device());
  kernels::compare(a.device(), op, out, operand(a, t, s), operand(b, t, s));
  return out;
}

Tensor scalar_like(double v, const Tensor& x) {
  DType t = x.dtype();
  if (!is_floating(t) && v != std::floor(v)) t = DType::f32;
  return scalar_tensor(v, TensorOptions(t).device(x.device()));
}

// A 0/1 (or 0.5 on ties) mask in dtype t, for maximum/minimum gradients.
Tensor select_mask(const Tensor& a, const Tensor& b, CompareOp strict, DType t) {
  Tensor win = compare_op(strict, "mask", a, b).to(t);
  Tensor tie = compare_op(CompareOp::eq, "mask", a, b).to(t);
  return win + tie * 0.5;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::add, "add", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b}))
    record("add", out, {a, b}, [a, b](const Tensor& g, const Node& n) {
      return Grads{n.needs_input_grad(0) ? reduce_grad(g, a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(g, b) : Tensor()};
    });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::sub, "sub", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b}))
    record("sub", out, {a, b}, [a, b](const Tensor& g, const Node& n) {
      return Grads{n.needs_input_grad(0) ? reduce_grad(g, a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(neg(g), b) : Tensor()};
    });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::mul, "mul", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b}))
    record("mul", out, {a, b}, [a, b](const Tensor& g, const Node& n) {
      return Grads{n.needs_input_grad(0) ? reduce_grad(g * b, a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(g * a, b) : Tensor()};
    });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::div, "div", a, b, arith_dtype(a, b, true));
  if (any_requires_grad({a, b}))
    record("div", out, {a, b}, [a, b](const Tensor& g, const Node& n) {
      return Grads{n.needs_input_grad(0) ? reduce_grad(g / b, a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(neg(g) * a / (b * b), b) : Tensor()};
    });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::pow, "pow", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b})) {
    Tensor y = out.detach();
    record("pow", out, {a, b}, [a, b, y](const Tensor& g, const Node& n) {
      return Grads{n.needs_input_grad(0) ? reduce_grad(g * b * pow(a, b - 1.0), a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(g * y * log(a), b) : Tensor()};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, double p) {
  Tensor out = unary_raw(UnaryOp::pow_scalar, as_float(a), p);
  if (any_requires_grad({a}))
    record("pow", out, {a}, [a, p](const Tensor& g, const Node&) { return Grads{g * p * pow(a, p - 1.0)}; });
  return out;
}

Tensor maximum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::maximum, "maximum", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b}))
    record("maximum", out, {a, b}, [a, b](const Tensor& g, const Node&) {
      Tensor ma = select_mask(a, b, CompareOp::gt, g.dtype());
      return Grads{reduce_grad(g * ma, a), reduce_grad(g * (1.0 - ma), b)};
    });
  return out;
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::minimum, "minimum", a, b, arith_dtype(a, b, false));
  if (any_requires_grad({a, b}))
    record("minimum", out, {a, b}, [a, b](const Tensor& g, const Node&) {
      Tensor ma = select_mask(a, b, CompareOp::lt, g.dtype());
      return Grads{reduce_grad(g * ma, a), reduce_grad(g * (1.0 - ma), b)};
    });
  return out;
}

// ---- unary

namespace {
// A unary op whose gradient is binary_kernel(g, saved), saved being the input
// (save_output = false) or the output.
Tensor unary_with_helper(UnaryOp op, const char* name, const Tensor& x, BinaryOp backward, bool save_output) {
  Tensor xf = as_float(x);
  Tensor out = unary_raw(op, xf);
  if (any_requires_grad({x})) {
    Tensor saved = save_output ? out.detach() : xf;
    record(name, out, {x}, [saved, backward, name](const Tensor& g, const Node&) {
      return Grads{binary_raw(backward, name, g, saved, g.dtype())};
    });
  }
  return out;
}
}  // namespace

Tensor neg(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::neg, x);
  if (any_requires_grad({x})) record("neg", out, {x}, [](const Tensor& g, const Node&) { return Grads{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::exp, as_float(x));
  if (any_requires_grad({x})) {
    Tensor y = out.detach();
    record("exp", out, {x}, [y](const Tensor& g, const Node&) { return Grads{g * y}; });
  }
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::log, as_float(x));
  if (any_requires_grad({x})) record("log", out, {x}, [x](const Tensor& g, const Node&) { return Grads{g / x}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::sqrt, as_float(x));
  if (any_requires_grad({x})) {
    Tensor y = out.detach();
    record("sqrt", out, {x}, [y](const Tensor& g, const Node&) { return Grads{g * 0.5 / y}; });
  }
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::rsqrt, as_float(x));
  if (any_requires_grad({x})) {
    Tensor y = out.detach();
    record("rsqrt", out, {x}, [y](const Tensor& g, const Node&) { return Grads{g * -0.5 * y * y * y}; });
  }
  return out;
}

Tensor tanh(const Tensor& x) { return unary_with_helper(UnaryOp::tanh, "tanh", x, BinaryOp::tanh_backward, true); }
Tensor sigmoid(const Tensor& x) {
  return unary_with_helper(UnaryOp::sigmoid, "sigmoid", x, BinaryOp::sigmoid_backward, true);
}
Tensor relu(const Tensor& x) { return unary_with_helper(UnaryOp::relu, "relu", x, BinaryOp::relu_backward, false); }
Tensor silu(const Tensor& x) { return unary_with_helper(UnaryOp::silu, "silu", x, BinaryOp::silu_backward, false); }

Tensor gelu(const Tensor& x, const std::string& approximate) {
  if (approximate == "none") return unary_with_helper(UnaryOp::gelu, "gelu", x, BinaryOp::gelu_backward, false);
  if (approximate == "tanh")
    return unary_with_helper(UnaryOp::gelu_tanh, "gelu", x, BinaryOp::gelu_tanh_backward, false);
  error("gelu: approximate must be 'none' or 'tanh', got '", approximate, "'");
}

Tensor sin(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::sin, as_float(x));
  if (any_requires_grad({x})) record("sin", out, {x}, [x](const Tensor& g, const Node&) { return Grads{g * cos(x)}; });
  return out;
}

Tensor cos(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::cos, as_float(x));
  if (any_requires_grad({x})) record("cos", out, {x}, [x](const Tensor& g, const Node&) { return Grads{neg(g) * sin(x)}; });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::abs, x);
  if (any_requires_grad({x}))
    record("abs", out, {x}, [x](const Tensor& g, const Node&) { return Grads{g * unary_raw(UnaryOp::sign, x)}; });
  return out;
}

Tensor square(const Tensor& x) {
  Tensor out = unary_raw(UnaryOp::square, x);
  if (any_requires_grad({x})) record("square", out, {x}, [x](const Tensor& g, const Node&) { return Grads{g * x * 2.0}; });
  return out;
}

Tensor clamp(const Tensor& x, double lo, double hi) {
  if (lo > hi) error("clamp: min ", lo, " is greater than max ", hi);
  Tensor out = unary_raw(UnaryOp::clamp, x, lo, hi);
  if (any_requires_grad({x}))
    record("clamp", out, {x}, [x, lo, hi](const Tensor& g, const Node&) {
      Tensor inside = compare_op(CompareOp::ge, "clamp", x, scalar_like(lo, x));
      inside = where(compare_op(CompareOp::le, "clamp", x, scalar_like(hi, x)), inside, zeros_like(inside));
      return Grads{g * inside.to(g.dtype())};
    });
  return out;
}

Tensor clamp_min(const Tensor& x, double lo) { return clamp(x, lo, INFINITY); }
Tensor clamp_max(const Tensor& x, double hi) { return clamp(x, -INFINITY, hi); }

// ---- comparisons and selection

Tensor eq(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_op(CompareOp::ge, "ge", a, b); }
Tensor logical_not(const Tensor& x) { return compare_op(CompareOp::eq, "logical_not", x, scalar_like(0, x)); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  if (cond.dtype() != DType::b8) error("where: condition must be bool, got ", cond.dtype());
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  const DType t = promote(a.dtype(), b.dtype());
  const Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = make_tensor(s, t, a.device());
  kernels::where(a.device(), out, operand(cond, DType::b8, s), operand(a, t, s), operand(b, t, s));
  if (any_requires_grad({a, b}))
    record("where", out, {a, b}, [cond, a, b](const Tensor& g, const Node& n) {
      Tensor z = zeros({}, g.options());
      return Grads{n.needs_input_grad(0) ? reduce_grad(where(cond, g, z), a) : Tensor(),
                   n.needs_input_grad(1) ? reduce_grad(where(cond, z, g), b) : Tensor()};
    });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  if (mask.dtype() != DType::b8) error("masked_fill: mask must be bool, got ", mask.dtype());
  Shape s = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  if (s != x.shape()) error("masked_fill: mask of shape ", mask.shape(), " does not broadcast to ", x.shape());
  return where(mask, scalar_like(value, x).to(x.dtype()), x);
}

// ---- operators

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

}  // namespace fm

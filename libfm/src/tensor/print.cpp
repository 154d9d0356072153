// Prints tensors the way PyTorch does:
//   tensor([[ 0.1000, -2.0000],
//           [ 3.0000,  4.5000]], dtype=float64)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "fm/autograd.h"
#include "fm/tensor.h"

namespace fm {
namespace {

constexpr int64_t kSummarizeAbove = 1000;
constexpr int64_t kEdgeItems = 3;

struct Formatter {
  bool floating = true;
  bool integral_values = true;  // floats that are all whole numbers print as "1."
  bool scientific = false;
  int width = 1;

  bool boolean = false;

  std::string format(double v) const {
    char buf[64];
    if (boolean) return v != 0 ? "True" : "False";
    if (!floating) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    else if (std::isnan(v)) std::snprintf(buf, sizeof buf, "nan");
    else if (std::isinf(v)) std::snprintf(buf, sizeof buf, v > 0 ? "inf" : "-inf");
    else if (scientific) std::snprintf(buf, sizeof buf, "%.4e", v);
    else if (integral_values) std::snprintf(buf, sizeof buf, "%.0f.", v);
    else std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
  }
};

void print_dim(std::ostream& os, const std::vector<double>& vals, const Shape& shape, int d, int64_t base,
               const Formatter& f, bool summarize, int indent) {
  const int64_t n = shape[d];
  int64_t inner = 1;
  for (int i = d + 1; i < shape.size(); ++i) inner *= shape[i];
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(size_t(indent + 1), ' '));
      i = n - kEdgeItems;
    }
    if (d + 1 == shape.size()) {
      std::string s = f.format(vals[size_t(base + i)]);
      os << std::string(size_t(std::max(0, f.width - int(s.size()))), ' ') << s;
    } else {
      print_dim(os, vals, shape, d + 1, base + i * inner, f, summarize, indent + 1);
    }
    if (i + 1 < n) {
      if (d + 1 == shape.size()) os << ", ";
      else os << "," << std::string(size_t(shape.size() - d - 1), '\n') << std::string(size_t(indent + 1), ' ');
    }
  }
  os << "]";
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> vals = to_vector<double>();
  Formatter f;
  f.floating = is_floating(dtype());
  f.boolean = dtype() == DType::b8;
  double max_abs = 0, min_abs = INFINITY;
  for (double v : vals) {
    if (!std::isfinite(v)) continue;
    if (v != std::floor(v)) f.integral_values = false;
    max_abs = std::max(max_abs, std::fabs(v));
    if (v != 0) min_abs = std::min(min_abs, std::fabs(v));
  }
  if (f.floating && !f.integral_values && (max_abs >= 1e8 || min_abs < 1e-4 || max_abs / min_abs > 1e3))
    f.scientific = true;
  if (f.floating && f.integral_values && max_abs >= 1e8) f.scientific = true;
  for (double v : vals) f.width = std::max(f.width, int(f.format(v).size()));

  std::ostringstream os;
  os << "tensor(";
  if (dim() == 0) os << f.format(vals.at(0));
  else print_dim(os, vals, shape(), 0, 0, f, numel() > kSummarizeAbove, 7);
  if (numel() == 0) os << ", size=" << shape();
  if (!device().is_cpu()) os << ", device='" << device().str() << "'";
  if (dtype() != DType::f32 && dtype() != DType::i64 && dtype() != DType::b8) os << ", dtype=" << name(dtype());
  if (requires_grad()) os << (grad_fn() ? ", grad_fn=<" + grad_fn()->name() + ">" : std::string(", requires_grad=True"));
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace fm

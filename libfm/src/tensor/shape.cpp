#include "fm/shape.h"

#include <algorithm>

#include "fm/error.h"

namespace fm {

Shape::Shape(std::initializer_list<int64_t> dims) {
  for (int64_t d : dims) push_back(d);
}

Shape::Shape(const std::vector<int64_t>& dims) {
  for (int64_t d : dims) push_back(d);
}

void Shape::push_back(int64_t v) {
  FM_CHECK(n_ < kMaxDims, "shape: more than ", kMaxDims, " dims");
  d_[n_++] = v;
}

void Shape::insert(int pos, int64_t v) {
  FM_CHECK(n_ < kMaxDims, "shape: more than ", kMaxDims, " dims");
  for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
  d_[pos] = v;
  ++n_;
}

void Shape::erase(int pos) {
  for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
  --n_;
}

void Shape::resize(int n, int64_t fill) {
  FM_CHECK(n <= kMaxDims, "shape: more than ", kMaxDims, " dims");
  for (int i = n_; i < n; ++i) d_[i] = fill;
  n_ = n;
}

int64_t Shape::numel() const {
  int64_t p = 1;
  for (int i = 0; i < n_; ++i) p *= d_[i];
  return p;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < n_; ++i) s += (i ? "," : "") + std::to_string(d_[i]);
  return s + "]";
}

bool Shape::operator==(const Shape& o) const { return n_ == o.n_ && std::equal(begin(), end(), o.begin()); }

std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

Shape contiguous_strides(const Shape& shape) {
  Shape st;
  st.resize(shape.size());
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const int n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (int i = 0; i < n; ++i) {
    const int ia = i - (n - a.size()), ib = i - (n - b.size());
    const int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    if (da != db && da != 1 && db != 1)
      error(op, ": shapes ", a, " and ", b, " do not broadcast (dim ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int wrap_dim(int64_t dim, int ndim, const char* op) {
  const int64_t n = std::max(ndim, 1);  // a scalar accepts dim 0 and -1
  if (dim < -n || dim >= n) error(op, ": dim ", dim, " out of range for a tensor of ", ndim, " dims");
  return int(dim < 0 ? dim + n : dim);
}

}  // namespace fm

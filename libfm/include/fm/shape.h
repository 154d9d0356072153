#pragma once
// Shape: up to kMaxDims sizes (or strides) held inline, so tensor metadata
// never touches the heap.
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

namespace fm {

constexpr int kMaxDims = 8;

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(const std::vector<int64_t>& dims);
  template <class It>
  Shape(It first, It last) {
    for (; first != last; ++first) push_back(int64_t(*first));
  }

  int size() const { return n_; }
  int ndim() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v);
  void insert(int pos, int64_t v);
  void erase(int pos);
  void resize(int n, int64_t fill = 0);

  int64_t numel() const;  // product of the sizes; 1 for a scalar
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }
  std::string str() const;  // "[2,3,4]"

  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  int64_t d_[kMaxDims] = {};
  int n_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& s);

// Row-major strides for a shape.
Shape contiguous_strides(const Shape& shape);

// Shape of broadcasting a with b (NumPy rules); throws naming `op` if they don't.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Wraps a possibly negative dim into [0, ndim); throws naming `op` if out of range.
int wrap_dim(int64_t dim, int ndim, const char* op);

}  // namespace fm

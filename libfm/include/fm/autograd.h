#pragma once
// Define-by-run autograd. Each differentiable op that sees an input needing
// grad records a Node on its output; backward() walks the graph in reverse
// creation order, summing gradients that meet, and accumulates into leaves.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fm/tensor.h"

namespace fm {

// An edge from a node to the node that produced one of its inputs.
struct Edge {
  std::shared_ptr<Node> node;  // null when that input needs no grad
};

class Node {
 public:
  explicit Node(std::string name);
  virtual ~Node() = default;
  // Given d(loss)/d(output), returns d(loss)/d(input_i) for each input
  // (an undefined Tensor where an input needs none).
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;

  const std::string& name() const { return name_; }
  uint64_t sequence() const { return seq_; }
  std::vector<Edge> next;  // one per input
  bool needs_input_grad(size_t i) const { return i < next.size() && next[i].node != nullptr; }

 private:
  std::string name_;
  uint64_t seq_;
};

// The usual node: a closure over what the backward formula needs.
using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output, const Node& node)>;

// Whether ops record graphs on this thread.
bool grad_enabled();
void set_grad_enabled(bool on);

class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

// True when grad mode is on and some input requires grad.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Records `fn` as the grad_fn of `out` with edges to `inputs`. Call only when
// any_requires_grad(inputs). Returns `out` for chaining.
Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn);

// Runs backward from `root` with initial gradient `grad`.
void run_backward(const Tensor& root, const Tensor& grad);

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-4;
};

// Compares the analytic gradient of sum(f(inputs) * r) (r a fixed random
// tensor) with central finite differences, in f64. Inputs are converted to
// f64 copies; those with requires_grad are checked. Returns true when all
// agree; otherwise fills `report` with the first mismatch.
bool gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
               const std::vector<Tensor>& inputs, std::string* report = nullptr,
               const GradcheckOptions& opt = {});

}  // namespace fm

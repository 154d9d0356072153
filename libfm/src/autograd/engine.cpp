// The autograd engine: graph recording and the backward pass.
#include <atomic>
#include <queue>
#include <unordered_map>
#include <vector>

#include "fm/autograd.h"
#include "fm/kernels/core.h"
#include "fm/ops/elementwise.h"
#include "fm/tensor_impl.h"

namespace fm {
namespace {

thread_local bool t_grad_enabled = true;
std::atomic<uint64_t> g_next_sequence{0};

class LambdaNode final : public Node {
 public:
  LambdaNode(const char* name, BackwardFn fn) : Node(name), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& grad_output) override { return fn_(grad_output, *this); }

 private:
  BackwardFn fn_;
};

// The sink of a leaf: adds incoming gradients into leaf.grad, then fires the
// leaf's post-accumulate hooks (the engine runs it once per backward pass,
// after every contribution has been summed).
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<TensorImpl>& leaf) : Node("AccumulateGrad"), leaf_(leaf) {}

  std::vector<Tensor> apply(const Tensor& g) override {
    auto impl = leaf_.lock();
    if (!impl) return {};
    Tensor leaf(impl);
    if (g.shape() != impl->shape)
      error("backward: gradient of shape ", g.shape(), " for a leaf of shape ", impl->shape);
    if (impl->grad) {
      Tensor acc(impl->grad);
      Tensor gg = g.dtype() == acc.dtype() ? g : g.to(acc.dtype());
      kernels::binary(acc.device(), BinaryOp::add, acc, acc, gg);
    } else if (g.impl_ptr().use_count() == 1 && g.impl()->storage.use_count() == 1 && g.is_contiguous() &&
               g.dtype() == impl->dtype) {
      impl->grad = g.impl_ptr();  // nothing else holds g: keep it instead of copying
    } else {
      // A fresh buffer: g may be shared with other leaves' gradients.
      Tensor copy = g.dtype() == impl->dtype ? g.clone() : g.to(impl->dtype);
      impl->grad = copy.impl_ptr();
    }
    for (auto& hook : impl->post_accumulate_hooks) hook(leaf);
    return {};
  }

 private:
  std::weak_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  auto acc = impl->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    impl->grad_accumulator = acc;
  }
  return acc;
}

struct BySequence {
  bool operator()(Node* a, Node* b) const { return a->sequence() < b->sequence(); }
};

}  // namespace

Node::Node(std::string name) : name_(std::move(name)), seq_(g_next_sequence++) {}

bool grad_enabled() { return t_grad_enabled; }
void set_grad_enabled(bool on) { t_grad_enabled = on; }

bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!t_grad_enabled) return false;
  for (const auto& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn fn) {
  auto node = std::make_shared<LambdaNode>(name, std::move(fn));
  node->next.reserve(inputs.size());
  for (const auto& in : inputs)
    node->next.push_back(Edge{in.defined() && in.requires_grad() ? gradient_edge(in) : nullptr});
  out.impl()->grad_fn = std::move(node);
  out.impl()->requires_grad = true;
  return out;
}

void run_backward(const Tensor& root, const Tensor& grad) {
  NoGradGuard no_grad;
  auto start = gradient_edge(root);

  // Count, for each node, the edges that point at it.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{start.get()};
  deps[start.get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next) {
      if (!e.node) continue;
      if (deps[e.node.get()]++ == 0) stack.push_back(e.node.get());
    }
  }

  // Process nodes newest first once all their gradient contributions are in.
  std::unordered_map<Node*, Tensor> pending;
  std::priority_queue<Node*, std::vector<Node*>, BySequence> ready;
  pending[start.get()] = grad;
  ready.push(start.get());
  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Tensor g;
    if (auto it = pending.find(n); it != pending.end()) {
      g = std::move(it->second);
      pending.erase(it);
    }
    std::vector<Tensor> grads;
    if (g.defined()) {
      grads = n->apply(g);
      if (!n->next.empty() && grads.size() != n->next.size())
        error("backward of ", n->name(), ": returned ", grads.size(), " gradients for ", n->next.size(),
              " inputs");
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* target = n->next[i].node.get();
      if (!target) continue;
      if (i < grads.size() && grads[i].defined()) {
        auto it = pending.find(target);
        if (it == pending.end()) pending.emplace(target, grads[i]);
        else it->second = it->second + grads[i];
      }
      if (--deps[target] == 0) ready.push(target);
    }
  }
}

}  // namespace fm

#include "fm/dist/zero.h"

#include <algorithm>
#include <cmath>

#include "fm/autograd.h"
#include "fm/error.h"
#include "fm/factory.h"
#include "fm/kernels/optim.h"
#include "fm/ops.h"

namespace fm::dist {

Zero1::Zero1(std::shared_ptr<Communicator> comm, const nn::FlatParameters& flat, const optim::AdamWOptions& options)
    : comm_(std::move(comm)), options_(options), lr_(options.lr) {
  const int W = comm_->world_size(), r = comm_->rank();
  for (const nn::FlatGroup& fg : flat.groups) {
    Group g{fg, (fg.data.numel() + W - 1) / W, {}, {}};
    const int64_t L = fg.data.numel(), lo = int64_t(r) * g.shard, hi = std::min(L, lo + g.shard);
    if (fg.dtype != DType::f32 && fg.dtype != DType::f64)
      error("Zero1: parameters must be float32 or float64 (master weights), got ", name(fg.dtype));
    // Each trainable slot owns [offset, next slot's offset): its padding goes with it.
    std::vector<const nn::FlatSlot*> slots;
    for (const nn::FlatSlot& s : fg.slots) slots.push_back(&s);
    std::sort(slots.begin(), slots.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!slots[i]->param.requires_grad()) continue;  // frozen: never updated
      const int64_t a = std::max(lo, slots[i]->offset);
      const int64_t b = std::min(hi, i + 1 < slots.size() ? slots[i + 1]->offset : L);
      if (a >= b) continue;
      const double wd = slots[i]->tags & nn::kNoDecay ? 0.0 : options.weight_decay;
      if (!g.pieces.empty() && g.pieces.back().weight_decay == wd && g.pieces.back().offset + g.pieces.back().length == a)
        g.pieces.back().length += b - a;
      else
        g.pieces.push_back({a, b - a, wd, {}, {}});
    }
    for (Piece& p : g.pieces) {
      p.exp_avg = zeros({p.length}, TensorOptions(fg.dtype).device(fg.device));
      p.exp_avg_sq = zeros({p.length}, TensorOptions(fg.dtype).device(fg.device));
    }
    groups_.push_back(std::move(g));
  }
}

void Zero1::zero_grad() {
  NoGradGuard ng;
  for (const Group& g : groups_) Tensor(g.flat.grad).zero_();
}

// [L] -> [W * shard], zeros after L (the shards must be equal for the collectives).
static Tensor padded(const Tensor& t, int64_t n) {
  if (t.numel() == n) return t;
  Tensor out = zeros({n}, t.options());
  out.narrow(0, 0, t.numel()).copy_(t);
  return out;
}

double Zero1::step(double max_norm, double grad_scale) {
  NoGradGuard ng;
  const int W = comm_->world_size(), r = comm_->rank();
  double total = 0;
  for (Group& g : groups_) {
    g.grad_shard = comm_->reduce_scatter(padded(g.flat.grad, W * g.shard), ReduceOp::average);
    if (grad_scale != 1.0) g.grad_shard = g.grad_shard * grad_scale;
    for (const Piece& p : g.pieces) total += sum(square(g.grad_shard.narrow(0, p.offset - r * g.shard, p.length))).to(DType::f64).item();
  }
  const Tensor t = tensor(std::vector<double>{total}, {1});
  comm_->all_reduce(t, ReduceOp::sum);
  const double norm = std::sqrt(t.item<double>());
  if (!std::isfinite(norm)) return norm;  // a skipped step: weights, moments and the step count stay
  ++step_;
  if (max_norm > 0 && norm > max_norm)  // optim::clip_grad_norm's rule
    for (Group& g : groups_) g.grad_shard = g.grad_shard * (max_norm / (norm + 1e-6));
  for (Group& g : groups_) {
    for (Piece& p : g.pieces) {
      kernels::AdamWArgs args;
      args.lr = lr_;
      args.beta1 = options_.beta1;
      args.beta2 = options_.beta2;
      args.eps = options_.eps;
      args.weight_decay = p.weight_decay;
      args.step = step_;
      const Tensor param = g.flat.data.narrow(0, p.offset, p.length);
      const Tensor grad = g.grad_shard.narrow(0, p.offset - r * g.shard, p.length).contiguous();
      kernels::adamw_step(param.device(), param, grad, p.exp_avg, p.exp_avg_sq, args);
    }
    // Every rank's updated shard to every rank.
    const int64_t L = g.flat.data.numel(), lo = int64_t(r) * g.shard, n = std::max<int64_t>(0, std::min(g.shard, L - lo));
    Tensor mine = zeros({g.shard}, g.flat.data.options());
    if (n > 0) mine.narrow(0, 0, n).copy_(g.flat.data.narrow(0, lo, n));
    Tensor(g.flat.data).copy_(comm_->all_gather(mine).narrow(0, 0, L));
  }
  return norm;
}

Tensor Zero1::full_state(const Group& g, bool second) const {
  const int r = comm_->rank();
  Tensor mine = zeros({g.shard}, g.flat.data.options());
  for (const Piece& p : g.pieces) mine.narrow(0, p.offset - r * g.shard, p.length).copy_(second ? p.exp_avg_sq : p.exp_avg);
  return comm_->all_gather(mine).narrow(0, 0, g.flat.data.numel());
}

std::map<std::string, Tensor> Zero1::state_dict() const {
  std::map<std::string, Tensor> out;
  for (const Group& g : groups_) {
    const Tensor m = full_state(g, false), v = full_state(g, true);
    for (const nn::FlatSlot& s : g.flat.slots) {
      if (!s.param.requires_grad()) continue;
      out["exp_avg." + s.name] = m.narrow(0, s.offset, s.numel).view(s.param.shape()).clone();
      out["exp_avg_sq." + s.name] = v.narrow(0, s.offset, s.numel).view(s.param.shape()).clone();
    }
  }
  out["step"] = scalar_tensor(double(step_), DType::i64);
  return out;
}

void Zero1::load_state_dict(const std::map<std::string, Tensor>& state) {
  NoGradGuard ng;
  std::string missing;
  for (const Group& g : groups_)
    for (const nn::FlatSlot& s : g.flat.slots)
      for (const char* k : {"exp_avg.", "exp_avg_sq."}) {
        if (!s.param.requires_grad()) continue;
        auto it = state.find(k + s.name);
        if (it == state.end() || it->second.numel() != s.numel) missing += " " + std::string(k) + s.name;
      }
  auto st = state.find("step");
  if (st == state.end()) missing += " step";
  if (!missing.empty()) error("Zero1::load_state_dict: missing or misshapen:", missing);
  for (Group& g : groups_) {
    Tensor m = zeros({g.flat.data.numel()}, g.flat.data.options()), v = zeros_like(m);
    for (const nn::FlatSlot& s : g.flat.slots) {
      if (!s.param.requires_grad()) continue;
      m.narrow(0, s.offset, s.numel).copy_(state.at("exp_avg." + s.name).reshape({s.numel}));
      v.narrow(0, s.offset, s.numel).copy_(state.at("exp_avg_sq." + s.name).reshape({s.numel}));
    }
    for (Piece& p : g.pieces) {
      p.exp_avg.copy_(m.narrow(0, p.offset, p.length));
      p.exp_avg_sq.copy_(v.narrow(0, p.offset, p.length));
    }
  }
  step_ = st->second.to(DType::i64).item<int64_t>();
}

int64_t Zero1::state_elements() const {
  int64_t n = 0;
  for (const Group& g : groups_)
    for (const Piece& p : g.pieces) n += 2 * p.length;
  return n;
}

}  // namespace fm::dist

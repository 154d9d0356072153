// cuDNN's fused flash attention, built through cudnn-frontend's graph API
// (header-only; its heavy headers stay in this file). The attention slots
// (attention.cu) try it first for bf16 or f16 heads with D == Dv, D a
// multiple of 8 up to 128, no mask, causal or not. Each problem (pass,
// dtype, device, sizes, every operand's strides, causal, scale) gets its
// graph and plan once; problems cuDNN refuses are remembered too, so they
// cost one map lookup. Any failure returns false and libfm's kernels run.
//
// cuDNN's Stats output is the natural-log log-sum-exp of the scaled scores
// of each query row (max + log(sum(exp(s - max)))), which is libfm's lse:
// the forward writes it straight into lse, the backward reads it from there.
// The backward asks for cuDNN's deterministic algorithm: libfm promises
// gradients that repeat bit for bit.
#include "attention_paths.h"

#include "fm/cuda/attention.h"

#if defined(FM_HAVE_CUDNN) && defined(FM_HAVE_CUDNN_FRONTEND)
#define CUDNN_FRONTEND_SKIP_JSON_LIB  // no plan serialisation: keeps the bundled JSON library out
#include <cuda_runtime_api.h>
#include <cudnn_frontend.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cudnn_handle.h"
#include "fm/factory.h"

namespace fm::cuda {
namespace {

namespace fe = cudnn_frontend;
using Attr = std::shared_ptr<fe::graph::Tensor_attributes>;
using Graph = std::shared_ptr<fe::graph::Graph>;
using Key = std::vector<int64_t>;

enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

// A built graph and its workspace bytes; no graph: cuDNN does not run the problem.
struct Plan {
  Graph graph;
  int64_t workspace = 0;
};

// t is [B,H,T,D] in dtype dt and cuDNN reads it in place: unit stride on D,
// base and strides 16-byte aligned (the alignment cuDNN's plans assume).
bool usable(const Tensor& t, DType dt, int64_t B, int64_t H, int64_t T, int64_t D) {
  if (!t.defined() || t.dtype() != dt || t.dim() != 4 || t.size(0) != B || t.size(1) != H || t.size(2) != T ||
      t.size(3) != D || t.stride(3) != 1 || reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0)
    return false;
  for (int d = 0; d < 3; ++d)
    if (t.size(d) > 1 && (t.stride(d) <= 0 || t.stride(d) % 8 != 0)) return false;
  return true;
}

// lse [B,H,Tq] f32, packed: cuDNN before 9.26 reads backward Stats only in that layout.
bool usable_stats(const Tensor& lse, int64_t B, int64_t H, int64_t Tq) {
  return lse.defined() && lse.dtype() == DType::f32 && lse.dim() == 3 && lse.size(0) == B && lse.size(1) == H &&
         lse.size(2) == Tq && lse.is_contiguous() && reinterpret_cast<uintptr_t>(lse.data_ptr()) % 16 == 0;
}

// The cases this path takes; cuDNN's own support checks come with the plan.
bool supported(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal) {
  if (mask.defined() || (q.dtype() != DType::bf16 && q.dtype() != DType::f16) || q.dim() != 4 || k.dim() != 4)
    return false;
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  if (B == 0 || H == 0 || Tq == 0 || Tk == 0 || D == 0 || D % 8 != 0 || D > 128) return false;
  if (causal && Tq > Tk) return false;  // rows that see no key: libfm's out = 0 and lse = +inf there
  return usable(q, q.dtype(), B, H, Tq, D) && usable(k, q.dtype(), B, H, Tk, D) && usable(v, q.dtype(), B, H, Tk, D);
}

std::vector<int64_t> dims_of(const Tensor& t) { return {t.size(0), t.size(1), t.size(2), t.size(3)}; }

// Strides as cuDNN gets them. A size-1 dim's stride is free: it takes the
// packed value, so one layout has one cache key and cuDNN sees no odd value.
std::vector<int64_t> strides_of(const Tensor& t) {
  std::vector<int64_t> s{t.stride(0), t.stride(1), t.stride(2), 1};
  int64_t extent = t.size(3);
  for (int d = 2; d >= 0; --d) {
    if (t.size(d) == 1) s[d] = extent;
    extent = std::max(extent, s[d] * t.size(d));
  }
  return s;
}

Key key_of(int64_t pass, const Tensor& q, const Tensor& k, bool causal, double scale,
           std::initializer_list<const Tensor*> operands) {
  Key key{pass,      int64_t(q.dtype()), q.device().index, causal, std::bit_cast<uint32_t>(float(scale)),
          q.size(0), q.size(1),          q.size(2),        k.size(2), q.size(3)};
  for (const Tensor* t : operands)
    for (int64_t s : strides_of(*t)) key.push_back(s);
  return key;
}

Graph new_graph(DType t) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(t == DType::bf16 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

Attr input(const Graph& g, Uid uid, const char* name, const Tensor& t) {
  return g->tensor(
      fe::graph::Tensor_attributes().set_name(name).set_uid(uid).set_dim(dims_of(t)).set_stride(strides_of(t)));
}

void output(const Attr& a, Uid uid, const Tensor& t) {
  a->set_output(true).set_uid(uid).set_dim(dims_of(t)).set_stride(strides_of(t));
}

// Stats [B,H,Tq,1] f32, packed (as lse).
void stats_layout(fe::graph::Tensor_attributes& a, const Tensor& q) {
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2);
  a.set_uid(kStats).set_data_type(fe::DataType_t::FLOAT).set_dim({B, H, Tq, 1}).set_stride({H * Tq, Tq, 1, 1});
}

// libfm's causal mask: key j is visible to query i iff j <= i + (Tk - Tq),
// cuDNN's bottom-right diagonal (the same as top-left when Tq == Tk).
template <class Options>
void set_causal(Options& o, bool causal, int64_t Tq, int64_t Tk) {
  if (!causal) return;
  o.set_diagonal_alignment(Tq == Tk ? fe::DiagonalAlignment_t::TOP_LEFT : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
      .set_diagonal_band_right_bound(0);
}

// Validates and lowers the graph, then builds the first plan cuDNN's
// heuristics rank that builds.
Plan finish(Graph g, cudnnHandle_t h) {
  Plan p;
  if (g->validate().is_good() && g->build_operation_graph(h).is_good() &&
      g->create_execution_plans({fe::HeurMode_t::A}).is_good() && g->check_support().is_good() &&
      g->build_plans().is_good() && g->get_workspace_size(p.workspace).is_good())
    p.graph = std::move(g);
  return p;
}

Plan forward_plan(cudnnHandle_t h, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                  double scale) {
  Graph g = new_graph(q.dtype());
  auto opts = fe::graph::SDPA_attributes().set_name("attention").set_generate_stats(true).set_attn_scale(float(scale));
  set_causal(opts, causal, q.size(2), k.size(2));
  auto [o, stats] = g->sdpa(input(g, kQ, "q", q), input(g, kK, "k", k), input(g, kV, "v", v), opts);
  output(o, kO, out);
  stats->set_output(true);
  stats_layout(*stats, q);
  return finish(std::move(g), h);
}

Plan backward_plan(cudnnHandle_t h, const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                   const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, bool causal, double scale) {
  Graph g = new_graph(q.dtype());
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("attention_backward")
                  .set_attn_scale(float(scale))
                  .set_deterministic_algorithm(true);
  set_causal(opts, causal, q.size(2), k.size(2));
  fe::graph::Tensor_attributes stats;
  stats_layout(stats.set_name("stats"), q);
  auto [gq, gk, gv] = g->sdpa_backward(input(g, kQ, "q", q), input(g, kK, "k", k), input(g, kV, "v", v),
                                       input(g, kO, "o", out), input(g, kDO, "do", dout), g->tensor(stats), opts);
  output(gq, kDQ, dq);
  output(gk, kDK, dk);
  output(gv, kDV, dv);
  return finish(std::move(g), h);
}

struct Cache {
  std::mutex mu;
  std::map<Key, Plan> plans;
};

Cache& cache() {
  static auto* c = new Cache();  // never freed: cuDNN plans must not die after the CUDA context at exit
  return *c;
}

// The plan of `key`, built on first use; a build that throws counts as unsupported.
template <class Build>
Plan plan_for(const Key& key, Build&& build) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.plans.find(key);
  if (it == c.plans.end()) {
    Plan p;
    try {
      p = build();
    } catch (...) {
      p = Plan{};
    }
    it = c.plans.emplace(key, std::move(p)).first;
  }
  return it->second;
}

// Falls back. A failed cuDNN or CUDA call may leave a (non-sticky) error
// behind that the fallback kernels' launch checks would take for their own.
bool declined() {
  (void)cudaGetLastError();
  return false;
}

// Runs the plan on the lease's stream. A failed execution marks the problem
// unsupported; a workspace that cannot be allocated only skips this call.
bool run(const Key& key, const Plan& plan, const CudnnLease& lease, int device,
         std::unordered_map<int64_t, void*>& pack) {
  Tensor ws;
  if (plan.workspace > 0) ws = empty({plan.workspace}, TensorOptions(DType::u8).device(Device::cuda(device)));
  if (plan.graph->execute(lease.get(), pack, ws.defined() ? ws.data_ptr() : nullptr).is_good()) return true;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.plans[key] = Plan{};
  return declined();
}

}  // namespace

bool attention_cudnn_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& mask, bool causal, double scale) {
  if (!supported(q, k, v, mask, causal)) return false;
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), D = q.size(3);
  if (!usable(out, q.dtype(), B, H, Tq, D) || !usable_stats(lse, B, H, Tq)) return false;
  try {
    const int device = q.device().index;
    CudnnLease lease(device);  // also serialises plan builds per device
    const Key key = key_of(0, q, k, causal, scale, {&q, &k, &v, &out});
    const Plan plan = plan_for(key, [&] { return forward_plan(lease.get(), out, q, k, v, causal, scale); });
    if (!plan.graph) return declined();
    std::unordered_map<int64_t, void*> pack{{kQ, q.data_ptr()},   {kK, k.data_ptr()},        {kV, v.data_ptr()},
                                            {kO, out.data_ptr()}, {kStats, lse.data_ptr()}};
    return run(key, plan, lease, device, pack);
  } catch (...) {
    return declined();
  }
}

bool attention_cudnn_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                              const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                              const Tensor& mask, bool causal, double scale) {
  if (!supported(q, k, v, mask, causal)) return false;
  const DType dt = q.dtype();
  const int64_t B = q.size(0), H = q.size(1), Tq = q.size(2), Tk = k.size(2), D = q.size(3);
  if (!usable(out, dt, B, H, Tq, D) || !usable(dout, dt, B, H, Tq, D) || !usable(dq, dt, B, H, Tq, D) ||
      !usable(dk, dt, B, H, Tk, D) || !usable(dv, dt, B, H, Tk, D) || !usable_stats(lse, B, H, Tq))
    return false;
  try {
    const int device = q.device().index;
    CudnnLease lease(device);
    const Key key = key_of(1, q, k, causal, scale, {&q, &k, &v, &out, &dout, &dq, &dk, &dv});
    const Plan plan = plan_for(key, [&] {
      return backward_plan(lease.get(), dq, dk, dv, dout, q, k, v, out, causal, scale);
    });
    if (!plan.graph) return declined();
    std::unordered_map<int64_t, void*> pack{
        {kQ, q.data_ptr()},       {kK, k.data_ptr()},   {kV, v.data_ptr()},   {kO, out.data_ptr()},
        {kDO, dout.data_ptr()},   {kDQ, dq.data_ptr()}, {kDK, dk.data_ptr()}, {kDV, dv.data_ptr()},
        {kStats, lse.data_ptr()}};
    return run(key, plan, lease, device, pack);
  } catch (...) {
    return declined();
  }
}

bool has_cudnn_attention() { return true; }

}  // namespace fm::cuda

#else  // built without cuDNN or cudnn-frontend: libfm's kernels serve every case

namespace fm::cuda {

bool attention_cudnn_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             bool, double) {
  return false;
}

bool attention_cudnn_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, const Tensor&, bool, double) {
  return false;
}

bool has_cudnn_attention() { return false; }

}  // namespace fm::cuda

#endif

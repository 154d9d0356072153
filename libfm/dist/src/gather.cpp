#include "fm/dist/gather.h"

#include "fm/autograd.h"

namespace fm::dist {

Tensor all_gather_with_grad(Communicator& comm, const Tensor& x) {
  const Tensor local = x.contiguous();
  Tensor out = comm.all_gather(local.detach());
  if (!any_requires_grad({x})) return out;
  Communicator* c = &comm;
  return record("AllGatherBackward", out, {x}, [c](const Tensor& g, const Node&) {
    return std::vector<Tensor>{c->reduce_scatter(g.contiguous(), ReduceOp::sum)};
  });
}

}  // namespace fm::dist

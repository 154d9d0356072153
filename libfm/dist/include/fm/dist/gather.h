#pragma once
// all_gather with a gradient, for losses over the features of every rank
// (the contrastive loss): forward gathers [n, ...] from each rank into
// [world * n, ...]; backward sums the gathered gradient over ranks and hands
// each rank its own block (a reduce-scatter), which is the gradient of the
// sum of every rank's loss with respect to this rank's features.
#include "fm/dist/communicator.h"

namespace fm::dist {

Tensor all_gather_with_grad(Communicator& comm, const Tensor& x);

}  // namespace fm::dist

// world(): the process's communicator, chosen from how it was launched.
#include <mutex>

#include "fm/dist/communicator.h"
#include "fm/dist/launch.h"
#include "fm/error.h"

namespace fm::dist {
namespace {

std::mutex mu;
std::shared_ptr<Communicator> the_world;

}  // namespace

#ifndef FM_HAVE_MPI
std::shared_ptr<Communicator> mpi_world() {
  error("dist: this build of libfm has no MPI (configure with -DLIBFM_MPI=ON and install libopenmpi-dev)");
}
bool mpi_available() { return false; }
#endif
#ifndef FM_HAVE_NCCL
std::shared_ptr<Communicator> nccl_world(int) {
  error("dist: this build of libfm has no NCCL (it needs the CUDA backend and the NCCL library)");
}
bool nccl_available() { return false; }
#endif

std::shared_ptr<Communicator> world() {
  std::lock_guard<std::mutex> lock(mu);
  if (the_world) return the_world;
  const Launch l = detect_launch();
  if (l.launcher == "mpi" || (l.launcher == "slurm" && mpi_available())) {
    the_world = mpi_world();
    if (the_world->world_size() != l.world_size || the_world->rank() != l.rank)
      error("dist: the launcher says rank ", l.rank, " of ", l.world_size, " but MPI says ", the_world->rank(), " of ",
            the_world->world_size(), " (srun needs --mpi=pmix for an MPI job)");
  } else if (l.world_size > 1) {
    error("dist: ", l.launcher, " variables ask for ", l.world_size,
          " ranks, but this libfm can only join them through MPI (mpirun, or srun --mpi=pmix, with LIBFM_MPI=ON); "
          "the TCP rendezvous of NCCL is not built yet");
  } else {
    the_world = single_process();
  }
  return the_world;
}

void use_single_process_world() {
  std::lock_guard<std::mutex> lock(mu);
  if (the_world && the_world->world_size() > 1)
    error("dist: this process already joined a world of ", the_world->world_size(), " ranks");
  if (!the_world) the_world = single_process();
}

Communicator* active_world() {
  std::lock_guard<std::mutex> lock(mu);
  return the_world && the_world->world_size() > 1 ? the_world.get() : nullptr;
}

}  // namespace fm::dist

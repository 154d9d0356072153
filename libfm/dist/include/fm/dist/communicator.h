#pragma once
// fm::dist::Communicator: the collectives data-parallel training needs, over
// an existing engine (DESIGN.md: no transport of our own). Implementations:
// a single process (world size 1: every collective is the identity), and
// MPI (Open MPI; host tensors, device tensors staged through the host),
// built with LIBFM_MPI. Every call is bounded by timeout_s: a rank that died
// or hangs makes the others fail with one clear error instead of waiting
// forever (the launcher then ends the job).
#include <chrono>
#include <memory>
#include <string>

#include "fm/tensor.h"

namespace fm::dist {

enum class ReduceOp { sum, average };

// An operation in flight. wait() returns once it completed on this rank and
// throws fm::Error (naming the operation) when timeout_s passed first.
class Work {
 public:
  virtual ~Work() = default;
  virtual bool done() = 0;  // drives progress; true once complete
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;  // "single" | "mpi"

  // In place, on a contiguous tensor of the same shape and dtype on every
  // rank (f32, f64, i32 or i64 for reductions).
  virtual std::shared_ptr<Work> all_reduce_async(const Tensor& t, ReduceOp op) = 0;
  void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum) { all_reduce_async(t, op)->wait(); }
  // Root's values into t on every rank (any dtype).
  virtual void broadcast(const Tensor& t, int root) = 0;
  // [n, ...] from every rank -> [world_size * n, ...] in rank order.
  virtual Tensor all_gather(const Tensor& t) = 0;
  // [world_size * n, ...] on every rank -> rank r's [n, ...] block of the reduction.
  virtual Tensor reduce_scatter(const Tensor& t, ReduceOp op) = 0;
  virtual void barrier() = 0;
  // Ends every rank of the job now (after a fatal error on this one).
  virtual void abort(int code) = 0;

  double timeout_s = 300;
};

// A world of one.
std::shared_ptr<Communicator> single_process();

// MPI_COMM_WORLD (MPI_Init_thread on first use). Throws when libfm was built
// without MPI (LIBFM_MPI=OFF).
std::shared_ptr<Communicator> mpi_world();
bool mpi_available();

// NCCL over device `device` (cuda:device) among the world's ranks, which
// find each other through world() (MPI); at world size 1 it stands alone.
// Throws when libfm was built without NCCL (LIBFM_CUDA and the NCCL
// library). Host tensors are staged through the device.
std::shared_ptr<Communicator> nccl_world(int device);
bool nccl_available();

// The communicator of this process, made once: MPI's world when the process
// was started by an MPI launcher (mpirun, srun with PMI) and libfm has MPI,
// else a single process. Torchrun- or Slurm-style variables that ask for
// more than one rank without MPI are an error (there is nothing to talk over).
std::shared_ptr<Communicator> world();

// Makes world() a single process whatever the launcher says, for a process
// that runs independent jobs under a launcher (`fm sweep`: its own grid
// points on each rank). An error once world() has made a larger world.
void use_single_process_world();

// The world's communicator when one was made and has more than one rank:
// fm's main aborts the job through it after a fatal error.
Communicator* active_world();

}  // namespace fm::dist

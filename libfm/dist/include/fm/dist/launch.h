#pragma once
// Which rank this process is, from the launcher's environment:
//   mpirun (Open MPI)   OMPI_COMM_WORLD_RANK, _SIZE, _LOCAL_RANK
//   MPICH / Hydra       PMI_RANK, PMI_SIZE, MPI_LOCALRANKID
//   Slurm (srun)        SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
//   torchrun-style      RANK, WORLD_SIZE, LOCAL_RANK (MASTER_ADDR, MASTER_PORT)
// in that order of precedence; none of them: rank 0 of 1.
#include <functional>
#include <string>

namespace fm::dist {

struct Launch {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string launcher = "none";  // "mpi" | "slurm" | "torchrun" | "none"
  std::string master_addr;        // torchrun-style only
  int master_port = 0;
};

// getenv by default; tests pass their own lookup. Malformed or inconsistent
// values (a rank outside [0, world_size)) throw fm::Error naming the variable.
Launch detect_launch(const std::function<const char*(const char*)>& getenv_fn = {});

}  // namespace fm::dist

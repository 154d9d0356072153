#include "fm/dist/launch.h"

#include <cstdlib>

#include "fm/error.h"

namespace fm::dist {
namespace {

int parse_int(const char* name, const char* value) {
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  if (!*value || *end || v < 0 || v > (1 << 24)) error("launch: ", name, "='", value, "' is not a rank or size");
  return int(v);
}

}  // namespace

Launch detect_launch(const std::function<const char*(const char*)>& getenv_fn) {
  const auto get = [&](const char* name) -> const char* { return getenv_fn ? getenv_fn(name) : std::getenv(name); };
  struct Scheme {
    const char* launcher;
    const char *rank, *size, *local;
  };
  static const Scheme schemes[] = {
      {"mpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"mpi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
      {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
  };
  Launch l;
  for (const Scheme& s : schemes) {
    const char* rank = get(s.rank);
    const char* size = get(s.size);
    if (!rank || !size) continue;
    l.launcher = s.launcher;
    l.rank = parse_int(s.rank, rank);
    l.world_size = parse_int(s.size, size);
    if (l.world_size < 1) error("launch: ", s.size, " must be at least 1, got ", l.world_size);
    if (l.rank >= l.world_size) error("launch: ", s.rank, "=", l.rank, " is outside ", s.size, "=", l.world_size);
    if (const char* local = get(s.local)) l.local_rank = parse_int(s.local, local);
    if (l.launcher == std::string("torchrun")) {
      if (const char* a = get("MASTER_ADDR")) l.master_addr = a;
      if (const char* p = get("MASTER_PORT")) l.master_port = parse_int("MASTER_PORT", p);
    }
    return l;
  }
  return l;
}

}  // namespace fm::dist

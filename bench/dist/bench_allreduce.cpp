// All-reduce bandwidth of libfm's MPI communicator beside MPI_Allreduce
// itself (the peer: the same engine without libfm's nonblocking call and
// polled wait). Run under mpirun:
//   mpirun -np 2 build/bin/bench_allreduce [max_mib]
// Rank 0 prints a Markdown table: message size, time per call, algorithm
// bandwidth (bytes / time) and bus bandwidth (algbw x 2 (W - 1) / W, the
// NCCL convention: what each link carries in a ring all-reduce).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fm/dist/communicator.h"
#include "fm/factory.h"

using namespace fm;

namespace {

template <class F>
double median_seconds(F&& f, int reps) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  // Every rank reports the slowest rank's median.
  double m = t[t.size() / 2];
  MPI_Allreduce(MPI_IN_PLACE, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  auto comm = dist::mpi_world();
  const int W = comm->world_size();
  const int64_t max_mib = argc > 1 ? std::atoll(argv[1]) : 64;
  if (comm->rank() == 0) {
    std::printf("all-reduce (sum, f32), %d ranks\n\n", W);
    std::printf("| size | libfm | MPI_Allreduce | libfm algbw | libfm busbw | MPI busbw |\n| --- | --- | --- | --- | --- | --- |\n");
  }
  for (int64_t bytes = 4096; bytes <= max_mib * 1024 * 1024; bytes *= 4) {
    const int64_t n = bytes / 4;
    const Tensor t = ones({n});
    const int reps = bytes < (1 << 20) ? 50 : 10;
    const double ours = median_seconds([&] { comm->all_reduce(t, dist::ReduceOp::sum); }, reps);
    const double peer = median_seconds(
        [&] { MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); }, reps);
    const double bus = 2.0 * (W - 1) / W;
    if (comm->rank() == 0)
      std::printf("| %lld KiB | %.1f us | %.1f us | %.2f GB/s | %.2f GB/s | %.2f GB/s |\n", (long long)(bytes / 1024),
                  ours * 1e6, peer * 1e6, double(bytes) / ours / 1e9, double(bytes) / ours / 1e9 * bus,
                  double(bytes) / peer / 1e9 * bus);
  }
  return 0;
}

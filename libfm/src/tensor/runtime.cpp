#include "fm/runtime.h"

#include <omp.h>

#include "fm/error.h"

namespace fm {

void set_num_threads(int n) {
  if (n < 1) error("set_num_threads: need at least 1 thread, got ", n);
  omp_set_num_threads(n);  // Eigen's GEMM follows OpenMP's setting
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace fm

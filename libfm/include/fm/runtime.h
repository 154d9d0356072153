#pragma once
namespace fm {
// Threads used by CPU kernels (OpenMP and Eigen); defaults to all cores.
void set_num_threads(int n);
int get_num_threads();
}  // namespace fm

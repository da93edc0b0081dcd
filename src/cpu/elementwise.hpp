#pragma once
// The CPU reference's element-wise executors: OpenMP over rows of the owned box (deliberately
// plain). Every element is written by one call of f from its own inputs, so the result does not
// depend on the thread count.

#include "gigareg/device/view.hpp"

namespace gigareg::cpu {

/// Calls f(i, j, k, c) for every voxel of `owned` and every component, rows in parallel.
template <class F>
void for_each_element(const Box& owned, int components, F f) {
  const index_t rows = owned.size.y * owned.size.z * components;
#pragma omp parallel for schedule(static)
  for (index_t row = 0; row < rows; ++row) {
    const index_t j = owned.lo.y + row % owned.size.y;
    const index_t k = owned.lo.z + (row / owned.size.y) % owned.size.z;
    const int c = int(row / (owned.size.y * owned.size.z));
    for (index_t i = owned.lo.x; i < owned.lo.x + owned.size.x; ++i) f(i, j, k, c);
  }
}

/// Calls f(j, k, row) for every row (y, z) of `owned`, rows in parallel, with
/// row = (k - owned.lo.z) * owned.size.y + (j - owned.lo.y): the executor of the per-voxel ops that
/// also reduce, each row accumulating along x in order into its own slot (so that the slot sums,
/// taken in row order afterwards, do not depend on the thread count).
template <class F>
void for_each_row(const Box& owned, F f) {
  const index_t ny = owned.size.y, nz = owned.size.z;
#pragma omp parallel for collapse(2) schedule(static)
  for (index_t kk = 0; kk < nz; ++kk)
    for (index_t jj = 0; jj < ny; ++jj) f(owned.lo.y + jj, owned.lo.z + kk, kk * ny + jj);
}

}  // namespace gigareg::cpu

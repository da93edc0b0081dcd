#pragma once
// The CPU reference's element-wise executor: OpenMP over rows of the owned box (deliberately
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

}  // namespace gigareg::cpu

// CPU reference of the mean-squares loss (src/ops/loss.cpp checks the arguments).
// One z slice per OpenMP iteration, summed row by row in index order: the partials do not depend
// on the thread count, and a z-slab computes bitwise what the whole volume computes.

#include "gigareg/ops/loss.hpp"

namespace gigareg::cpu {

void mse_loss(VolumeView<const float> fixed, VolumeView<const float> warped,
              VolumeView<const float> mask, const Box& owned, SlicePartials partials,
              VolumeView<float> grad) {
  const index_t nz = owned.size.z;
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < nz; ++k) {
    const index_t z = owned.lo.z + k;
    double s = 0.0, c = 0.0;
    for (index_t y = owned.lo.y; y < owned.lo.y + owned.size.y; ++y)
      for (index_t x = owned.lo.x; x < owned.lo.x + owned.size.x; ++x) {
        const bool in = mask.data == nullptr || mask.at(x, y, z) > 0.5f;
        float g = 0.0f;
        if (in) {
          const float d = warped.at(x, y, z) - fixed.at(x, y, z);
          s += double(d) * double(d);
          c += 1.0;
          g = 2.0f * d;
        }
        if (grad.data != nullptr) grad.at(x, y, z) = g;
      }
    if (partials.data != nullptr) {
      partials.data[k * kLossTerms] = s;
      partials.data[k * kLossTerms + 1] = c;
    }
  }
}

}  // namespace gigareg::cpu

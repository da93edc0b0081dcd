#pragma once
// The CC metric's texture test for one voxel: the variance of the fixed image over the
// (2r + 1)^3 window (clipped to the grid) compared with a threshold. The CPU's texture_mask
// (src/registration) computes the same sums with separable running sums shared between voxels;
// this per-voxel form, used by the CUDA kernel, adds the same double terms in the same order
// (x sums of each row, then y sums of those per plane, then the planes in z), with every operation
// correctly rounded and uncontracted, so both give the same mask bit for bit.
#include "gigareg/device/rounding.hpp"
#include "gigareg/device/view.hpp"

namespace gigareg {

/// Window variance of v around (x, y, z), windows clipped to the grid `n`.
GIGAREG_HDI double window_variance(const VolumeView<const float>& v, Index3 n, index_t x,
                                   index_t y, index_t z, int radius) {
  using detail::rn_add;
  using detail::rn_div;
  using detail::rn_mul;
  using detail::rn_sub;
  const index_t r = radius;
  const index_t x0 = x - r > 0 ? x - r : 0, x1 = x + r < n.x - 1 ? x + r : n.x - 1;
  const index_t y0 = y - r > 0 ? y - r : 0, y1 = y + r < n.y - 1 ? y + r : n.y - 1;
  const index_t z0 = z - r > 0 ? z - r : 0, z1 = z + r < n.z - 1 ? z + r : n.z - 1;
  double s1 = 0, s2 = 0;
  for (index_t d = z0; d <= z1; ++d) {
    double p1 = 0, p2 = 0;  // y sums of the plane's x sums
    for (index_t t = y0; t <= y1; ++t) {
      double a1 = 0, a2 = 0;  // x sums of one row
      for (index_t u = x0; u <= x1; ++u) {
        const double val = double(v.at(u, t, d));
        a1 = rn_add(a1, val);
        a2 = rn_add(a2, rn_mul(val, val));
      }
      p1 = rn_add(p1, a1);
      p2 = rn_add(p2, a2);
    }
    s1 = rn_add(s1, p1);
    s2 = rn_add(s2, p2);
  }
  const double count = rn_mul(rn_mul(double(x1 - x0 + 1), double(y1 - y0 + 1)), double(z1 - z0 + 1));
  const double mean = rn_div(s1, count);
  return rn_sub(rn_div(s2, count), rn_mul(mean, mean));
}

}  // namespace gigareg

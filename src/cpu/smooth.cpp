// CPU reference of one separable Gaussian pass (OpenMP, deliberately plain). The z-chunking,
// pass order and scratch live in src/ops/smooth.cpp, shared with the CUDA backend.
//
// Each line of the region along `axis` is first copied into a buffer with the out-of-grid
// samples replaced by the clamped edge sample, then every output is gaussian_tap_sum over the
// buffer: the same formula, in the same order, as the CUDA kernels' shared-memory tiles.
// Passes along y and z buffer a tile of up to 64 x-columns at once so that the copies read rows.

#include <algorithm>
#include <vector>

#include "gigareg/device/gaussian.hpp"

namespace gigareg::cpu {

void gaussian_pass(VolumeView<const float> src, VolumeView<float> dst, const Box& region, int axis,
                   const GaussianTaps& taps) {
  if (region.empty()) return;
  const int r = taps.radius;
  const index_t n = src.global_size[axis];
  const index_t len = region.size[axis];
  const index_t lo = region.lo[axis];

  if (axis == 0) {
    const index_t rows = region.size.y * region.size.z;
#pragma omp parallel
    {
      std::vector<float> buf(std::size_t(len + 2 * r));
#pragma omp for schedule(static)
      for (index_t row = 0; row < rows; ++row) {
        const index_t j = region.lo.y + row % region.size.y;
        const index_t k = region.lo.z + row / region.size.y;
        for (index_t t = 0; t < len + 2 * r; ++t)
          buf[std::size_t(t)] = src.at(clamp_index(lo - r + t, n), j, k);
        for (index_t t = 0; t < len; ++t)
          dst.at(lo + t, j, k) = gaussian_tap_sum(taps.w, r, buf.data() + t + r, 1);
      }
    }
    return;
  }

  // axis 1 (y) or 2 (z): the third axis is the one neither x nor `axis`.
  constexpr index_t kTile = 64;
  const int other = axis == 1 ? 2 : 1;
  const index_t x_tiles = (region.size.x + kTile - 1) / kTile;
  const index_t jobs = x_tiles * region.size[other];
#pragma omp parallel
  {
    std::vector<float> buf(std::size_t((len + 2 * r) * kTile));
#pragma omp for schedule(static)
    for (index_t job = 0; job < jobs; ++job) {
      const index_t x0 = region.lo.x + (job % x_tiles) * kTile;
      const index_t w = std::min(kTile, region.lo.x + region.size.x - x0);
      const index_t o = region.lo[other] + job / x_tiles;
      for (index_t t = 0; t < len + 2 * r; ++t) {
        const index_t a = clamp_index(lo - r + t, n);
        Index3 g{x0, 0, 0};
        g[axis] = a;
        g[other] = o;
        for (index_t x = 0; x < w; ++x) buf[std::size_t(t * kTile + x)] = src.at(g.x + x, g.y, g.z);
      }
      for (index_t t = 0; t < len; ++t) {
        Index3 g{x0, 0, 0};
        g[axis] = lo + t;
        g[other] = o;
        const float* center = buf.data() + (t + r) * kTile;
        for (index_t x = 0; x < w; ++x)
          dst.at(g.x + x, g.y, g.z) = gaussian_tap_sum(taps.w, r, center + x, kTile);
      }
    }
  }
}

void gaussian_adjoint_pass(VolumeView<const float> src, VolumeView<float> dst, int axis,
                           const GaussianTaps& taps) {
  // The transpose of gaussian_pass over the whole grid, one line at a time: each output gathers
  // the inputs whose taps reached it (gaussian_adjoint_sample, the CUDA kernel's formula).
  const Index3 size = src.global_size;
  const index_t n = size[axis];
  const int a1 = axis == 0 ? 1 : 0, a2 = axis == 2 ? 1 : 2;  // the two other axes
  const index_t lines = size[a1] * size[a2];
#pragma omp parallel
  {
    std::vector<float> line(static_cast<std::size_t>(n));
#pragma omp for schedule(static)
    for (index_t l = 0; l < lines; ++l) {
      Index3 g{0, 0, 0};
      g[a1] = l % size[a1];
      g[a2] = l / size[a1];
      for (index_t t = 0; t < n; ++t) {
        g[axis] = t;
        line[std::size_t(t)] = src.at(g.x, g.y, g.z);
      }
      for (index_t t = 0; t < n; ++t) {
        g[axis] = t;
        dst.at(g.x, g.y, g.z) = gaussian_adjoint_sample(taps.w, taps.radius, line.data(), 1, t, n);
      }
    }
  }
}

}  // namespace gigareg::cpu

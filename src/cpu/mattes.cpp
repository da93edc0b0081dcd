// CPU reference of Mattes mutual information (histogram, table, gradient) and of the intensity
// range (src/ops/loss.cpp checks the arguments). The per-voxel math is device/mattes.hpp, the
// same functions the CUDA kernels call.

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/elementwise.hpp"
#include "gigareg/ops/loss.hpp"

namespace gigareg::cpu {

/// Thread-local int64 histograms summed into `hist`: integer sums, so the result does not
/// depend on the thread count or order.
void mattes_histogram(VolumeView<const float> fixed, VolumeView<const float> warped,
                      VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                      const MattesAxis& moving_axis, std::int64_t* hist) {
  const int n = moving_axis.bins;
  const std::size_t cells = std::size_t(n) * std::size_t(n);
  std::memset(hist, 0, cells * sizeof(std::int64_t));
#pragma omp parallel
  {
    std::vector<std::int64_t> local(cells, 0);
#pragma omp for schedule(static) collapse(2)
    for (index_t z = owned.lo.z; z < owned.lo.z + owned.size.z; ++z)
      for (index_t y = owned.lo.y; y < owned.lo.y + owned.size.y; ++y)
        for (index_t x = owned.lo.x; x < owned.lo.x + owned.size.x; ++x) {
          if (mask.data != nullptr && !(mask.at(x, y, z) > 0.5f)) continue;
          const MattesContribution c =
              mattes_contribution(fixed.at(x, y, z), warped.at(x, y, z), fixed_axis, moving_axis);
          for (int a = 0; a < c.ni; ++a)
            for (int b = 0; b < 4; ++b)
              local[std::size_t((c.i0 + a) * n + c.j0 + b)] += std::int64_t(c.weight[a * 4 + b]);
        }
#pragma omp critical(gigareg_mattes_histogram)
    for (std::size_t i = 0; i < cells; ++i) hist[i] += local[i];
  }
}

void mattes_table(const std::int64_t* hist, int bins, float* table, double* value) {
  const std::size_t n = std::size_t(bins);
  std::vector<std::int64_t> hf(n, 0), hm(n, 0);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      hf[i] += hist[i * n + j];
      hm[j] += hist[i * n + j];
    }
  for (std::size_t i = 0; i < n; ++i) total += hf[i];
  double mi = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      const std::int64_t h = hist[i * n + j];
      const double g = mattes_pointwise_mi(h, hf[i], hm[j], total);
      if (table != nullptr) table[i * n + j] = float(g);
      if (h > 0) mi += (double(h) / double(total)) * g;
    }
  if (value != nullptr) {
    const double t = double(total) * kMattesFixedPointInvScale;
    value[0] = total > 0 ? -mi * t : 0.0;
    value[1] = t;
  }
}

void mattes_gradient(VolumeView<const float> fixed, VolumeView<const float> warped,
                     VolumeView<const float> mask, const Box& owned, const MattesAxis& fixed_axis,
                     const MattesAxis& moving_axis, const float* table, VolumeView<float> grad) {
  for_each_element(owned, 1, [&](index_t x, index_t y, index_t z, int) {
    float g = 0.0f;
    if (mask.data == nullptr || mask.at(x, y, z) > 0.5f)
      g = mattes_voxel_gradient(fixed.at(x, y, z), warped.at(x, y, z), fixed_axis, moving_axis, table);
    grad.at(x, y, z) = g;
  });
}

void intensity_range(VolumeView<const float> image, VolumeView<const float> mask, const Box& owned,
                     SlicePartials partials) {
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < owned.size.z; ++k) {
    const index_t z = owned.lo.z + k;
    float lo = std::numeric_limits<float>::infinity();
    float hi = -std::numeric_limits<float>::infinity();
    for (index_t y = owned.lo.y; y < owned.lo.y + owned.size.y; ++y)
      for (index_t x = owned.lo.x; x < owned.lo.x + owned.size.x; ++x) {
        if (mask.data != nullptr && !(mask.at(x, y, z) > 0.5f)) continue;
        const float v = image.at(x, y, z);
        if (v < lo) lo = v;  // NaN compares false: skipped
        if (v > hi) hi = v;
      }
    partials.data[k * kRangeTerms] = double(lo);
    partials.data[k * kRangeTerms + 1] = double(hi);
  }
}

}  // namespace gigareg::cpu

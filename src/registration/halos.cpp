// The halos of the registration's stages (halos.hpp).

#include "registration/halos.hpp"

#include <algorithm>
#include <cmath>

#include "gigareg/error.hpp"
#include "gigareg/ops/smooth.hpp"

namespace gigareg::reg {

Index3 metric_image_halo(const MetricParams& m) {
  if (m.type != MetricType::CC) return {0, 0, 0};
  const index_t h = 2 * index_t(m.radius);  // exact gradient: windows of the windows
  return {h, h, h};
}

Index3 metric_mask_halo(const MetricParams& m) {
  if (m.type != MetricType::CC) return {0, 0, 0};
  const index_t h = index_t(m.radius);
  return {h, h, h};
}

Index3 displacement_halo(const Geometry& g, double bound_mm) {
  GIGAREG_REQUIRE(bound_mm >= 0.0 && std::isfinite(bound_mm), "the displacement bound must be finite");
  const Mat3d m = g.physical_to_index_map().matrix;
  Index3 h;
  for (int a = 0; a < 3; ++a) {
    const double row = std::sqrt(m(a, 0) * m(a, 0) + m(a, 1) * m(a, 1) + m(a, 2) * m(a, 2));
    const double d = bound_mm * row;
    const double v = std::ceil(d + 1e-6 * (d + double(g.size[a])) + 1e-6) + 1.0;
    h[a] = index_t(std::min(v, double(g.size[a])));
  }
  return h;
}

Index3 smoothing_halo(double sigma) {
  if (!(sigma > 0)) return {0, 0, 0};
  return gaussian_radii(Vec3d{sigma, sigma, sigma}, kDefaultGaussianTruncation);
}

Index3 max_halo(Index3 a, Index3 b) {
  return {std::max(a.x, b.x), std::max(a.y, b.y), std::max(a.z, b.z)};
}

}  // namespace gigareg::reg

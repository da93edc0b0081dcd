// The halos of the registration's stages (halos.hpp).

#include "registration/halos.hpp"

#include <algorithm>
#include <cmath>

#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/smooth.hpp"
#include "registration/metric.hpp"

namespace gigareg::reg {

// The CC metric's halos are its LNCC op's (ops/loss.hpp); MeanSquares and MI read no neighbours.
Index3 metric_image_halo(const MetricParams& m) {
  return m.type == MetricType::CC ? lncc_input_halo(cc_window(m)) : Index3{0, 0, 0};
}

Index3 metric_mask_halo(const MetricParams& m) {
  return m.type == MetricType::CC ? lncc_mask_halo(cc_window(m)) : Index3{0, 0, 0};
}

Index3 displacement_halo(const Geometry& g, double bound_mm) { return displacement_sample_halo(g, bound_mm); }

Index3 smoothing_halo(double sigma) {
  if (!(sigma > 0)) return {0, 0, 0};
  return gaussian_radii(Vec3d{sigma, sigma, sigma}, kDefaultGaussianTruncation);
}

Index3 max_halo(Index3 a, Index3 b) {
  return {std::max(a.x, b.x), std::max(a.y, b.y), std::max(a.z, b.z)};
}

}  // namespace gigareg::reg

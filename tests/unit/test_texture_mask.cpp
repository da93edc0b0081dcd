// The CC metric's texture mask (src/registration/texture_mask.cpp): against a direct per-voxel
// window variance, independent of the output box (a slab with only the planes it needs gives
// the whole-image mask bitwise), and the fixed mask and the variance floor's extremes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gigareg/error.hpp"
#include "registration/texture_mask.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;
using reg::texture_mask;

namespace {

/// The variance of the box window of `radius` around (i, j, k), clipped to the grid: direct sums.
double window_variance(const Volume<float>& v, index_t i, index_t j, index_t k, int radius) {
  const Index3 n = v.geometry().size;
  double s1 = 0, s2 = 0, count = 0;
  for (index_t c = std::max<index_t>(0, k - radius); c <= std::min<index_t>(n.z - 1, k + radius); ++c)
    for (index_t b = std::max<index_t>(0, j - radius); b <= std::min<index_t>(n.y - 1, j + radius); ++b)
      for (index_t a = std::max<index_t>(0, i - radius); a <= std::min<index_t>(n.x - 1, i + radius); ++a) {
        const double x = v(a, b, c);
        s1 += x;
        s2 += x * x;
        count += 1;
      }
  const double mean = s1 / count;
  return s2 / count - mean * mean;
}

/// Noise (no constant window) with a flat block (clipped to the grid), so both outcomes occur.
Volume<float> textured_image(const Geometry& g) {
  Volume<float> v = random_volume(g, 17, 0.0, 1.0);
  const Index3 n = g.size;
  for (index_t k = 2; k < std::min<index_t>(9, n.z); ++k)
    for (index_t j = 3; j < std::min<index_t>(12, n.y); ++j)
      for (index_t i = 1; i < std::min<index_t>(10, n.x); ++i) v(i, j, k) = 0.25f;
  return v;
}

}  // namespace

TEST(TextureMask, MatchesTheDirectWindowVariance) {
  const Geometry g = make_geometry({19, 17, 15});
  const Volume<float> image = textured_image(g);
  Volume<float> fixed_mask(g);
  for (index_t n = 0; n < fixed_mask.voxel_count(); ++n) fixed_mask.data()[n] = (n % 7 == 3) ? 0.0f : 1.0f;
  for (int radius : {1, 2}) {
    // The threshold between the two outcomes: the median of the variances.
    std::vector<double> vars;
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i) vars.push_back(window_variance(image, i, j, k, radius));
    std::vector<double> sorted = vars;
    std::nth_element(sorted.begin(), sorted.begin() + sorted.size() / 2, sorted.end());
    const double t = sorted[sorted.size() / 2];
    for (const Volume<float>* mask : {static_cast<const Volume<float>*>(nullptr), static_cast<const Volume<float>*>(&fixed_mask)}) {
      const Volume<float> out = texture_mask(image, mask, whole_box(g), radius, t);
      index_t kept = 0, dropped = 0, near = 0;
      std::size_t n = 0;
      for (index_t k = 0; k < g.size.z; ++k)
        for (index_t j = 0; j < g.size.y; ++j)
          for (index_t i = 0; i < g.size.x; ++i, ++n) {
            const double var = vars[n];
            if (std::abs(var - t) <= 1e-9 * t) {  // the sums' order decides: either is right
              ++near;
              continue;
            }
            const bool keep = var >= t && (mask == nullptr || (*mask)(i, j, k) > 0.5f);
            EXPECT_EQ(out(i, j, k), keep ? 1.0f : 0.0f) << i << "," << j << "," << k << " radius " << radius;
            (keep ? kept : dropped) += 1;
          }
      EXPECT_GT(kept, 100);
      EXPECT_GT(dropped, 100);
      EXPECT_LT(near, 8);
    }
  }
}

TEST(TextureMask, ASlabWithItsPlanesGivesTheWholeImageMaskBitwise) {
  const Geometry g = make_geometry({21, 16, 24});
  const Volume<float> image = textured_image(g);
  const int radius = 2;
  const double t = 0.05;
  const Volume<float> all = texture_mask(image, nullptr, whole_box(g), radius, t);
  for (const Box& slab : z_slabs(g.size, 3)) {
    // Only the planes the slab's windows read.
    const Volume<float> planes = copy_box(image, slab.grown_within({radius, radius, radius}, g.size));
    const Volume<float> part = texture_mask(planes, nullptr, slab, radius, t);
    EXPECT_EQ(part.box(), slab);
    EXPECT_TRUE(bitwise_equal(all, part, slab));
  }
}

TEST(TextureMask, VarianceFloorExtremesAndMask) {
  const Geometry g = make_geometry({9, 8, 7});
  const Volume<float> image = textured_image(g);
  Volume<float> mask(g);
  for (index_t n = 0; n < mask.voxel_count(); ++n) mask.data()[n] = (n % 3 == 0) ? 0.2f : 0.8f;
  const Volume<float> none = texture_mask(image, nullptr, whole_box(g), 1, std::numeric_limits<double>::infinity());
  const Volume<float> every = texture_mask(image, &mask, whole_box(g), 1, 0.0);
  for (index_t n = 0; n < g.voxel_count(); ++n) {
    EXPECT_EQ(none.data()[n], 0.0f);
    EXPECT_EQ(every.data()[n], mask.data()[n] > 0.5f ? 1.0f : 0.0f);
  }
}

TEST(TextureMask, RejectsAnImageThatDoesNotCoverTheWindows) {
  const Geometry g = make_geometry({9, 8, 12});
  const Volume<float> image = textured_image(g);
  const Box slab{{0, 0, 4}, {9, 8, 4}};
  const Volume<float> too_thin = copy_box(image, slab);  // no planes for the windows' reach
  EXPECT_THROW(texture_mask(too_thin, nullptr, slab, 2, 0.1), Error);
}

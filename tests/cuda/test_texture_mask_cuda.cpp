// The CC texture mask on CUDA against the host's separable sums: the same mask bit for bit, on
// fresh random images (a smooth pattern with flat regions, so that many windows sit near the
// threshold), with and without a mask, for several radii and for a box inside the grid.
#include <gtest/gtest.h>

#include <random>

#include "gigareg/memory.hpp"
#include "registration/texture_mask.hpp"
#include "test_util.hpp"

namespace gigareg {
namespace {

#define REQUIRE_GPU() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

Volume<float> textured_image(const Geometry& g, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> noise(0.0f, 1.0f);
  Volume<float> v(g, 1, MemorySpace::Host);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        // Flat where x < nx / 3 (no texture), weak texture in the middle, strong on the right.
        const float amp = i < g.size.x / 3 ? 0.0f : (i < 2 * g.size.x / 3 ? 0.02f : 1.0f);
        v.view().at(i, j, k) = 100.0f + amp * noise(rng) * 50.0f;
      }
  return v;
}

TEST(TextureMaskCuda, MatchesTheHostBitForBit) {
  REQUIRE_GPU();
  Geometry g;
  g.size = {61, 47, 33};
  g.spacing = {1.0, 0.9, 1.2};
  for (unsigned seed : {1u, 2u, 3u}) {
    const Volume<float> image = textured_image(g, seed);
    Volume<float> mask(g, 1, MemorySpace::Host);
    for (index_t n = 0; n < mask.voxel_count(); ++n) mask.data()[n] = (n * 7919 % 13) < 10 ? 1.0f : 0.0f;
    const Volume<float> image_d = image.to(MemorySpace::Device), mask_d = mask.to(MemorySpace::Device);
    for (int radius : {1, 2, 4}) {
      for (bool with_mask : {false, true}) {
        for (Box box : {Box{{0, 0, 0}, g.size}, Box{{3, 5, 7}, {40, 30, 20}}}) {
          // The weak texture's own variance (uniform noise of width 1: 1/12): about half of its
          // windows fall on each side, many within rounding of the threshold.
          const double min_variance = 1.0 / 12.0;
          const Volume<float> host = reg::texture_mask(Context::cpu(), image, with_mask ? &mask : nullptr,
                                                       box, radius, min_variance);
          const Volume<float> dev = reg::texture_mask(Context::cuda(), image_d, with_mask ? &mask_d : nullptr,
                                                      box, radius, min_variance).to(MemorySpace::Host);
          ASSERT_EQ(dev.box(), host.box());
          index_t ones = 0;
          for (index_t n = 0; n < host.voxel_count(); ++n) {
            ASSERT_EQ(dev.data()[n], host.data()[n]) << "seed " << seed << " r " << radius << " voxel " << n;
            ones += host.data()[n] > 0.5f;
          }
          // Both kinds of voxel are present: the comparison is not between two constant masks.
          EXPECT_GT(ones, 0);
          EXPECT_LT(ones, host.voxel_count());
        }
      }
    }
  }
}

}  // namespace
}  // namespace gigareg

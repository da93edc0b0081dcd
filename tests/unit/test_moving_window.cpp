// The moving image's window of a level (src/registration/moving_window.cpp) in one process: the
// whole level grid, built once and never rebuilt, holding the blurred and shrunk level image
// (or the input itself at full resolution without blur) and the mask resampled without blur.
// Windows of part of the grid (several processes) are checked by the sharded registrations of
// tests/distributed/test_dist_registration.cpp, which must give the single-process result
// bitwise.
#include <gtest/gtest.h>

#include "gigareg/ops/pyramid.hpp"
#include "gigareg/partition.hpp"
#include "registration/moving_window.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

reg::Inputs cpu_inputs(const Volume<float>& fixed, const Volume<float>& moving,
                       const Volume<float>* moving_mask) {
  reg::Inputs in;
  in.ctx = Context::cpu();
  in.part = &single_process();
  in.fixed = &fixed;
  in.moving = &moving;
  in.moving_mask = moving_mask;
  return in;
}

}  // namespace

TEST(MovingWindow, OneProcessHoldsTheWholeLevelImageAndNeverRebuilds) {
  const Geometry fg = make_geometry({20, 18, 16}, {2, 2, 2});
  const Geometry mg = oblique_geometry({23, 19, 17});
  const Volume<float> fixed = random_smooth_volume(fg, 1);
  const Volume<float> moving = random_smooth_volume(mg, 2);
  Volume<float> mask(mg);
  for (index_t n = 0; n < mask.voxel_count(); ++n) mask.data()[n] = (n % 5 == 0) ? 0.0f : 1.0f;
  const reg::Inputs in = cpu_inputs(fixed, moving, &mask);
  const Geometry fl = pyramid_level_geometry(fg, 2.0), ml = pyramid_level_geometry(mg, 2.0);
  const Vec3d sigma{1.0, 1.5, 0.5};
  reg::MovingWindow window(in, fl, whole_box(fl), ml, sigma);
  EXPECT_EQ(window.box(), whole_box(ml));
  EXPECT_EQ(window.rebuilds(), 1);
  EXPECT_TRUE(window.has_mask());

  Volume<float> expected(ml), expected_mask(ml);
  pyramid_downsample(in.ctx, moving.view(), mg, expected.view(), ml, sigma, whole_box(ml));
  pyramid_downsample(in.ctx, mask.view(), mg, expected_mask.view(), ml, Vec3d{0, 0, 0}, whole_box(ml));
  ASSERT_TRUE(window.image().present() && window.mask().present());
  EXPECT_TRUE(bitwise_equal(expected, window.image().get(), whole_box(ml)));
  EXPECT_TRUE(bitwise_equal(expected_mask, window.mask().get(), whole_box(ml)));

  // Any transform and bound: the whole grid covers it; cover() keeps the window.
  const Affined far{Mat3d::identity(), Vec3d{500, -300, 200}};
  EXPECT_TRUE(window.covers(far, 1e3));
  window.cover(far, 1e3);
  window.cover(Affined::identity(), 0.0);
  EXPECT_EQ(window.rebuilds(), 1);
  EXPECT_EQ(window.box(), whole_box(ml));
}

TEST(MovingWindow, FullResolutionWithoutBlurBorrowsTheInput) {
  const Geometry g = make_geometry({12, 10, 9});
  const Volume<float> fixed = random_smooth_volume(g, 3), moving = random_smooth_volume(g, 4);
  const reg::Inputs in = cpu_inputs(fixed, moving, nullptr);
  reg::MovingWindow window(in, g, whole_box(g), g, Vec3d{0, 0, 0});
  EXPECT_EQ(window.image().borrowed, &moving);  // no copy of a full-resolution input
  EXPECT_FALSE(window.has_mask());
  EXPECT_FALSE(window.mask().present());
}

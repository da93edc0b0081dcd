// Pyramid, CPU reference: the level-size rule, level geometry keeps the physical extent,
// downsampling reproduces a physical ramp at level voxel centres, upsampling of constant and
// linear displacement fields, the clamped boundary rule, and slab-and-stitch (bitwise).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/volume.hpp"

using namespace gigareg;

namespace {

const Context kCpu = Context::cpu();

Mat3d rotation(double ax, double ay, double az) {
  const double cx = std::cos(ax), sx = std::sin(ax), cy = std::cos(ay), sy = std::sin(ay),
               cz = std::cos(az), sz = std::sin(az);
  const Mat3d rx{{1, 0, 0, 0, cx, -sx, 0, sx, cx}};
  const Mat3d ry{{cy, 0, sy, 0, 1, 0, -sy, 0, cy}};
  const Mat3d rz{{cz, -sz, 0, sz, cz, 0, 0, 0, 1}};
  return rz * ry * rx;
}

Geometry oblique(Index3 size, Vec3d spacing) {
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.origin = {-10.0, 5.5, 3.25};
  g.direction = rotation(0.2, -0.1, 0.3);
  return g;
}

Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

Volume<float> crop(const Volume<float>& whole, const Box& box) {
  Volume<float> out(whole.geometry(), box, whole.components());
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) out(i, j, k, c) = whole(i, j, k, c);
  return out;
}

void fill_random(Volume<float>& v, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 2.0f);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = d(rng);
}

/// A linear function of the physical point, one per component.
double linear(const Vec3d& p, int c) {
  const double a[3][4] = {{1.0, 0.05, -0.03, 0.04}, {-2.0, 0.01, 0.02, -0.05}, {0.5, -0.04, 0.03, 0.02}};
  return a[c][0] + a[c][1] * p.x + a[c][2] * p.y + a[c][3] * p.z;
}

void fill_linear(Volume<float>& v) {
  const Geometry& g = v.geometry();
  for (int c = 0; c < v.components(); ++c)
    for (index_t k = 0; k < g.size.z; ++k)
      for (index_t j = 0; j < g.size.y; ++j)
        for (index_t i = 0; i < g.size.x; ++i)
          v(i, j, k, c) = float(linear(g.index_to_physical({double(i), double(j), double(k)}), c));
}

bool bitwise_equal_on(const Volume<float>& a, const Volume<float>& b, const Box& box) {
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) {
          const float x = a(i, j, k, c), y = b(i, j, k, c);
          if (std::memcmp(&x, &y, sizeof x) != 0) return false;
        }
  return true;
}

}  // namespace

TEST(Pyramid, LevelSizeIsFloorOfSizeOverFactorAtLeastOne) {
  EXPECT_EQ(pyramid_level_size({100, 5, 1}, 2.0), (Index3{50, 2, 1}));
  EXPECT_EQ(pyramid_level_size({100, 5, 1}, 3.0), (Index3{33, 1, 1}));
  EXPECT_EQ(pyramid_level_size({7, 8, 9}, 2.0), (Index3{3, 4, 4}));
  EXPECT_EQ(pyramid_level_size({7, 8, 9}, 1.0), (Index3{7, 8, 9}));
  EXPECT_EQ(pyramid_level_size({100, 10, 5}, 2.5), (Index3{40, 4, 2}));
  EXPECT_EQ(pyramid_level_size({64, 64, 64}, Vec3d{1, 2, 4}), (Index3{64, 32, 16}));
  EXPECT_EQ(pyramid_level_size({3, 3, 3}, 8.0), (Index3{1, 1, 1}));
  EXPECT_THROW(pyramid_level_size({8, 8, 8}, 0.5), Error);
  EXPECT_THROW(pyramid_level_size({8, 8, 8}, std::nan("")), Error);
}

TEST(Pyramid, LevelGeometryKeepsPhysicalBounds) {
  const Geometry fine = oblique({91, 109, 54}, {0.86, 0.86, 2.4});
  for (double f : {1.0, 2.0, 3.0, 4.0}) {
    const Geometry level = pyramid_level_geometry(fine, f);
    EXPECT_EQ(level.size, pyramid_level_size(fine.size, f));
    const BoundingBox a = fine.physical_bounds(), b = level.physical_bounds();
    for (int ax = 0; ax < 3; ++ax) {
      EXPECT_NEAR(a.min[ax], b.min[ax], 1e-9 * 300) << "factor " << f << " axis " << ax;
      EXPECT_NEAR(a.max[ax], b.max[ax], 1e-9 * 300) << "factor " << f << " axis " << ax;
      EXPECT_NEAR(level.spacing[ax], fine.spacing[ax] * fine.size[ax] / level.size[ax], 1e-12);
    }
    for (int e = 0; e < 9; ++e) EXPECT_EQ(level.direction.m[e], fine.direction.m[e]);
  }
}

TEST(Pyramid, DownsampleOfPhysicalRampReproducesItAtLevelCentresInInterior) {
  // Odd and even sizes: 41 -> 20 makes the spacing ratio 2.05, not 2.
  const Geometry fine = oblique({41, 36, 33}, {1.0, 1.2, 0.9});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  Volume<float> in(fine), out(coarse);
  fill_linear(in);
  const Vec3d sigma{1.0, 1.0, 1.0};
  pyramid_downsample(kCpu, in.view(), fine, out.view(), coarse, sigma, whole_box(coarse));
  const Index3 r = gaussian_radii(sigma);
  double max_err = 0.0, max_val = 0.0;
  int interior = 0;
  for (index_t k = 0; k < coarse.size.z; ++k)
    for (index_t j = 0; j < coarse.size.y; ++j)
      for (index_t i = 0; i < coarse.size.x; ++i) {
        const Vec3d p = coarse.index_to_physical({double(i), double(j), double(k)});
        const Vec3d q = fine.physical_to_index(p);
        bool inside = true;
        for (int a = 0; a < 3; ++a)
          inside = inside && q[a] - 1 - r[a] >= 0 && q[a] + 1 + r[a] <= fine.size[a] - 1;
        if (!inside) continue;
        ++interior;
        const double expect = linear(p, 0);
        max_err = std::max(max_err, std::abs(out(i, j, k) - expect));
        max_val = std::max(max_val, std::abs(expect));
      }
  EXPECT_GT(interior, 500);
  EXPECT_LT(max_err, 16 * std::numeric_limits<float>::epsilon() * max_val);
}

TEST(Pyramid, DownsampleWithoutBlurIsTrilinearResampling) {
  const Geometry fine = oblique({20, 18, 16}, {1.0, 1.0, 1.0});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  Volume<float> in(fine), a(coarse), b(coarse);
  fill_random(in, 3);
  pyramid_downsample(kCpu, in.view(), fine, a.view(), coarse, {0, 0, 0}, whole_box(coarse));
  resample_trilinear(kCpu, in.view(), fine, b.view(), coarse, whole_box(coarse));
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0);
  // Axis-aligned factor 2 grids: every coarse centre sits midway between 2 fine centres per axis,
  // so the trilinear sample is the mean of a 2x2x2 block.
  const Geometry fa = [] {
    Geometry g;
    g.size = {8, 6, 4};
    return g;
  }();
  const Geometry ca = pyramid_level_geometry(fa, 2.0);
  Volume<float> fin(fa), cout(ca);
  fill_random(fin, 4);
  resample_trilinear(kCpu, fin.view(), fa, cout.view(), ca, whole_box(ca));
  for (index_t k = 0; k < ca.size.z; ++k)
    for (index_t j = 0; j < ca.size.y; ++j)
      for (index_t i = 0; i < ca.size.x; ++i) {
        double mean = 0;
        for (int d = 0; d < 8; ++d) mean += fin(2 * i + (d & 1), 2 * j + ((d >> 1) & 1), 2 * k + (d >> 2));
        EXPECT_NEAR(cout(i, j, k), mean / 8, 1e-6);
      }
}

TEST(Pyramid, UpsampleConstantFieldIsConstantEverywhere) {
  const Geometry fine = oblique({23, 20, 17}, {1.1, 0.9, 1.4});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  Volume<float> u(coarse, 3), up(fine, 3);
  const float value[3] = {1.25f, -0.3f, 3.0f};
  for (int c = 0; c < 3; ++c)
    for (index_t e = 0; e < coarse.voxel_count(); ++e) u.data()[c * coarse.voxel_count() + e] = value[c];
  pyramid_upsample_field(kCpu, u.view(), coarse, up.view(), fine, whole_box(fine));
  for (int c = 0; c < 3; ++c)
    for (index_t e = 0; e < fine.voxel_count(); ++e)
      ASSERT_EQ(up.data()[c * fine.voxel_count() + e], value[c]) << "component " << c;
}

TEST(Pyramid, UpsampleLinearFieldReproducesItInInterior) {
  const Geometry fine = oblique({24, 21, 18}, {1.1, 0.9, 1.4});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  Volume<float> u(coarse, 3), up(fine, 3);
  fill_linear(u);
  pyramid_upsample_field(kCpu, u.view(), coarse, up.view(), fine, whole_box(fine));
  double max_err = 0.0, max_val = 0.0;
  int interior = 0;
  for (index_t k = 0; k < fine.size.z; ++k)
    for (index_t j = 0; j < fine.size.y; ++j)
      for (index_t i = 0; i < fine.size.x; ++i) {
        const Vec3d p = fine.index_to_physical({double(i), double(j), double(k)});
        const Vec3d q = coarse.physical_to_index(p);
        bool inside = true;
        for (int a = 0; a < 3; ++a) inside = inside && q[a] >= 0 && q[a] <= coarse.size[a] - 1;
        if (!inside) continue;
        ++interior;
        for (int c = 0; c < 3; ++c) {
          max_err = std::max(max_err, std::abs(up(i, j, k, c) - linear(p, c)));
          max_val = std::max(max_val, std::abs(linear(p, c)));
        }
      }
  EXPECT_GT(interior, 3000);
  EXPECT_LT(max_err, 16 * std::numeric_limits<float>::epsilon() * max_val);
}

TEST(Pyramid, ClampedBoundaryTakesTheEdgeValue) {
  Geometry fine;
  fine.size = {8, 1, 1};
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);  // 4 x 1 x 1, spacing 2
  Volume<float> u(coarse), up(fine);
  for (index_t i = 0; i < 4; ++i) u(i, 0, 0) = float(i);
  resample_trilinear(kCpu, u.view(), coarse, up.view(), fine, whole_box(fine));
  // Fine centre i sits at coarse index (i + 0.5) / 2 - 0.5.
  const float expect[8] = {0.0f, 0.25f, 0.75f, 1.25f, 1.75f, 2.25f, 2.75f, 3.0f};
  for (index_t i = 0; i < 8; ++i) EXPECT_EQ(up(i, 0, 0), expect[i]) << "fine voxel " << i;
}

TEST(Pyramid, SlabsWithHalosStitchBitwise) {
  const Geometry fine = oblique({26, 22, 31}, {1.0, 1.1, 0.8});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);  // 13 x 11 x 15
  Volume<float> img(fine);
  fill_random(img, 9);
  const Vec3d sigma{1.2, 0.8, 1.5};
  Volume<float> whole(coarse);
  pyramid_downsample(kCpu, img.view(), fine, whole.view(), coarse, sigma, whole_box(coarse));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Box owned : {Box{{0, 0, 0}, {13, 11, 5}}, Box{{0, 0, 5}, {13, 11, 6}},
                    Box{{0, 0, 11}, {13, 11, 4}}, Box{{3, 2, 4}, {6, 5, 7}}}) {
    const Box in_box = downsample_input_box(fine, coarse, owned, sigma);
    const Volume<float> shard = crop(img, in_box);
    Volume<float> out(coarse, owned, 1);
    out.fill(nan);
    pyramid_downsample(kCpu, shard.view(), fine, out.view(), coarse, sigma, owned);
    EXPECT_TRUE(bitwise_equal_on(out, whole, owned)) << "downsample slab at z " << owned.lo.z;
    // The halo is what the header promises: the fine box under the slab plus about 1 + r.
    EXPECT_LE(in_box.size.z, 2 * owned.size.z + 2 * (1 + gaussian_radius(sigma.z)) + 1);
  }

  Volume<float> u(coarse, 3);
  fill_random(u, 10);
  Volume<float> up_whole(fine, 3);
  pyramid_upsample_field(kCpu, u.view(), coarse, up_whole.view(), fine, whole_box(fine));
  for (Box owned : {Box{{0, 0, 0}, {26, 22, 10}}, Box{{0, 0, 10}, {26, 22, 11}},
                    Box{{0, 0, 21}, {26, 22, 10}}}) {
    const Volume<float> shard = crop(u, resample_source_box(coarse, fine, owned));
    // Output view wider than owned, poisoned: only owned may be written.
    const Box wide{{0, 0, std::max<index_t>(0, owned.lo.z - 2)},
                   {26, 22, std::min<index_t>(31, owned.hi().z + 2) - std::max<index_t>(0, owned.lo.z - 2)}};
    Volume<float> out(fine, wide, 3);
    out.fill(nan);
    pyramid_upsample_field(kCpu, shard.view(), coarse, out.view(), fine, owned);
    EXPECT_TRUE(bitwise_equal_on(out, up_whole, owned)) << "upsample slab at z " << owned.lo.z;
    for (int c = 0; c < 3; ++c)
      for (index_t k = wide.lo.z; k < wide.hi().z; ++k)
        for (index_t j = 0; j < 22; ++j)
          for (index_t i = 0; i < 26; ++i)
            ASSERT_EQ(std::isnan(out(i, j, k, c)), !owned.contains(i, j, k));
  }
}

TEST(Pyramid, RejectsBadArguments) {
  const Geometry fine = oblique({16, 16, 16}, {1, 1, 1});
  const Geometry coarse = pyramid_level_geometry(fine, 2.0);
  Volume<float> img(fine), out(coarse), field(fine, 3);
  img.fill(1.0f);
  const Box owned{{0, 0, 2}, {8, 8, 4}};
  const Volume<float> too_small = crop(img, resample_source_box(fine, coarse, owned));
  EXPECT_THROW(pyramid_downsample(kCpu, too_small.view(), fine, out.view(), coarse, {1, 1, 1}, owned),
               Error);
  EXPECT_NO_THROW(pyramid_downsample(kCpu, too_small.view(), fine, out.view(), coarse, {0, 0, 0}, owned));
  EXPECT_THROW(resample_trilinear(kCpu, field.view(), fine, out.view(), coarse, owned), Error);
  EXPECT_THROW(resample_trilinear(kCpu, img.view(), coarse, out.view(), coarse, owned), Error);
}

// Geometry math: index <-> physical round trips, oblique directions, anisotropic spacing,
// bounds, equality, validation of bad geometry.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "gigareg/error.hpp"
#include "gigareg/geometry.hpp"

using namespace gigareg;

namespace {

Mat3d rotation(double ax, double ay, double az) {
  const double cx = std::cos(ax), sx = std::sin(ax), cy = std::cos(ay), sy = std::sin(ay),
               cz = std::cos(az), sz = std::sin(az);
  const Mat3d rx{{1, 0, 0, 0, cx, -sx, 0, sx, cx}};
  const Mat3d ry{{cy, 0, sy, 0, 1, 0, -sy, 0, cy}};
  const Mat3d rz{{cz, -sz, 0, sz, cz, 0, 0, 0, 1}};
  return rz * ry * rx;
}

Geometry oblique_anisotropic() {
  Geometry g;
  g.size = {91, 109, 54};
  g.spacing = {0.86, 0.86, 2.4};
  g.origin = {-97.3, 120.1, -35.5};
  g.direction = rotation(0.3, -0.2, 0.7);
  return g;
}

}  // namespace

TEST(Geometry, IdentityMapsIndexToOriginPlusSpacing) {
  Geometry g;
  g.size = {10, 20, 30};
  g.spacing = {0.5, 1.0, 2.0};
  g.origin = {1, 2, 3};
  const Vec3d p = g.index_to_physical({2, 3, 4});
  EXPECT_DOUBLE_EQ(p.x, 2.0);
  EXPECT_DOUBLE_EQ(p.y, 5.0);
  EXPECT_DOUBLE_EQ(p.z, 11.0);
}

TEST(Geometry, LpsFlipsOfRasFile) {
  // A NIfTI file in RAS orientation with an identity sform reads into ITK with direction
  // diag(-1, -1, 1): index +x goes to physical -x (towards the right in LPS).
  Geometry g;
  g.size = {4, 4, 4};
  g.direction = Mat3d{{-1, 0, 0, 0, -1, 0, 0, 0, 1}};
  g.origin = {10, 20, 30};
  const Vec3d p = g.index_to_physical({1, 1, 1});
  EXPECT_DOUBLE_EQ(p.x, 9.0);
  EXPECT_DOUBLE_EQ(p.y, 19.0);
  EXPECT_DOUBLE_EQ(p.z, 31.0);
}

TEST(Geometry, RoundTripObliqueAnisotropic) {
  const Geometry g = oblique_anisotropic();
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-5.0, 120.0);
  for (int t = 0; t < 1000; ++t) {
    const Vec3d idx{u(rng), u(rng), u(rng)};
    const Vec3d back = g.physical_to_index(g.index_to_physical(idx));
    EXPECT_NEAR(back.x, idx.x, 1e-10);
    EXPECT_NEAR(back.y, idx.y, 1e-10);
    EXPECT_NEAR(back.z, idx.z, 1e-10);
  }
}

TEST(Geometry, StepAlongAxisMovesBySpacingAlongDirectionColumn) {
  const Geometry g = oblique_anisotropic();
  for (int axis = 0; axis < 3; ++axis) {
    Vec3d a{3, 4, 5}, b = a;
    b[axis] += 1;
    const Vec3d d = g.index_to_physical(b) - g.index_to_physical(a);
    EXPECT_NEAR(std::sqrt(dot(d, d)), g.spacing[axis], 1e-12);
    for (int r = 0; r < 3; ++r) EXPECT_NEAR(d[r] / g.spacing[axis], g.direction(r, axis), 1e-12);
  }
}

TEST(Geometry, BoundsCoverVoxelCorners) {
  Geometry g;
  g.size = {10, 4, 2};
  g.spacing = {2, 1, 3};
  g.origin = {0, 0, 0};
  const BoundingBox b = g.physical_bounds();
  EXPECT_DOUBLE_EQ(b.min.x, -1.0);
  EXPECT_DOUBLE_EQ(b.max.x, 19.0);
  EXPECT_DOUBLE_EQ(b.min.y, -0.5);
  EXPECT_DOUBLE_EQ(b.max.y, 3.5);
  EXPECT_DOUBLE_EQ(b.min.z, -1.5);
  EXPECT_DOUBLE_EQ(b.max.z, 4.5);
}

TEST(Geometry, BoundsOfRotatedGridContainAllVoxelCentres) {
  const Geometry g = oblique_anisotropic();
  const BoundingBox b = g.physical_bounds();
  for (int c = 0; c < 8; ++c) {
    const Vec3d idx{(c & 1) ? g.size.x - 1.0 : 0.0, (c & 2) ? g.size.y - 1.0 : 0.0,
                    (c & 4) ? g.size.z - 1.0 : 0.0};
    const Vec3d p = g.index_to_physical(idx);
    for (int a = 0; a < 3; ++a) {
      EXPECT_LT(b.min[a], p[a]);
      EXPECT_GT(b.max[a], p[a]);
    }
  }
}

TEST(Geometry, EqualityWithTolerance) {
  const Geometry a = oblique_anisotropic();
  Geometry b = a;
  b.origin.x += 1e-9;
  EXPECT_TRUE(a.equals(b));
  b.origin.x += 1e-2;
  EXPECT_FALSE(a.equals(b));
  Geometry c = a;
  c.size.z += 1;
  EXPECT_FALSE(a.equals(c));
  Geometry d = a;
  d.direction(0, 1) += 1e-3;
  EXPECT_FALSE(a.equals(d));
}

TEST(Geometry, ResizedKeepsPhysicalExtent) {
  const Geometry g = oblique_anisotropic();
  const Geometry h = resized_geometry(g, {46, 55, 27});
  const BoundingBox a = g.physical_bounds(), b = h.physical_bounds();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(a.min[i], b.min[i], 1e-9);
    EXPECT_NEAR(a.max[i], b.max[i], 1e-9);
  }
}

TEST(Geometry, ValidateRejectsBadGeometry) {
  const Geometry good = oblique_anisotropic();
  EXPECT_NO_THROW(good.validate("good.nii"));

  auto expect_invalid = [](const Geometry& g, const char* needle) {
    try {
      g.validate("bad.nii");
      FAIL() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::InvalidInput);
      EXPECT_NE(std::string(e.what()).find("bad.nii"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Geometry g = good;
  g.spacing.y = 0;
  expect_invalid(g, "spacing");
  g = good;
  g.spacing.z = -1;
  expect_invalid(g, "spacing");
  g = good;
  g.spacing.x = std::numeric_limits<double>::quiet_NaN();
  expect_invalid(g, "spacing");
  g = good;
  g.direction = Mat3d{{1, 0, 1, 0, 1, 0, 1, 0, 1}};
  expect_invalid(g, "singular");
  g = good;
  g.size = {index_t(1) << 40, index_t(1) << 20, index_t(1) << 10};
  expect_invalid(g, "overflows");
  g = good;
  g.size.y = 0;
  expect_invalid(g, "non-positive");
}

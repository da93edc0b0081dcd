// A displacement field applied as a transform of points (Boundary::FieldTransform) against ITK's
// own itk::DisplacementFieldTransform, the class antsApplyTransforms applies a warp with: the same
// point for every voxel centre of a grid that reaches well beyond the field's grid, so the
// comparison covers points inside the field's grid, in its last half voxel (where ITK's vector
// interpolator clamps the neighbour index) and beyond it (where ITK leaves the point alone).
#include <gtest/gtest.h>

#include <itkDisplacementFieldTransform.h>
#include <itkImage.h>

#include <cmath>

#include "gigareg/itk_adapters.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/phantom.hpp"
#include "test_util.hpp"

using namespace gigareg;

namespace {

/// A smooth field with a large constant part, so that carrying the edge value outwards and
/// dropping to zero differ by millimetres beyond the grid.
DisplacementField smooth_field(const Geometry& g) {
  DisplacementField u(g, 3);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const double a = 0.7 * double(i), b = 0.5 * double(j), c = 0.6 * double(k);
        u(i, j, k, 0) = float(3.0 + 1.5 * std::sin(a + 0.3 * b) * std::cos(c));
        u(i, j, k, 1) = float(-2.5 + 1.2 * std::cos(b - 0.4 * c + 0.2 * a));
        u(i, j, k, 2) = float(1.8 + std::sin(c + 0.5 * a) * std::sin(b));
      }
  return u;
}

using ItkField = itk::Image<itk::Vector<double, 3>, 3>;

ItkField::Pointer to_itk_double_field(const DisplacementField& u) {
  const Geometry& g = u.geometry();
  auto image = ItkField::New();
  set_itk_geometry(*image, g);
  image->Allocate();
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        itk::Vector<double, 3> v;
        for (int c = 0; c < 3; ++c) v[c] = u(i, j, k, c);
        image->SetPixel({{i, j, k}}, v);
      }
  return image;
}

}  // namespace

TEST(FieldTransformAgainstItk, PointsInsideAtTheBorderAndOutside) {
  // The field: oblique and anisotropic. The output grid: finer, rotated otherwise, two field
  // voxels of margin on every side, so many centres fall in each of the three regions.
  const Geometry ug = test::make_geometry({9, 8, 7}, {2.0, 2.5, 3.0}, {-8, -9, -10}, test::rotation(0.2, -0.1, 0.3));
  const DisplacementField u = smooth_field(ug);
  Geometry grid = test::make_geometry({44, 46, 42}, {0.7, 0.75, 0.8}, {0, 0, 0}, test::rotation(-0.1, 0.15, -0.05));
  // Centre the output grid on the field's grid.
  const Vec3d uc = ug.index_to_physical({0.5 * (ug.size.x - 1), 0.5 * (ug.size.y - 1), 0.5 * (ug.size.z - 1)});
  const Vec3d gc = grid.index_to_physical({0.5 * (grid.size.x - 1), 0.5 * (grid.size.y - 1), 0.5 * (grid.size.z - 1)});
  grid.origin = grid.origin + (uc - gc);
  // The points reach the field through an affine, as in apply's chain (affine first, then field).
  const Affined affine = make_affine({3.0, -2.0, 2.5}, {1.02, 0.98, 1.01}, {0.5, -0.7, 0.3}, uc);

  auto itk_transform = itk::DisplacementFieldTransform<double, 3>::New();
  itk_transform->SetDisplacementField(to_itk_double_field(u));

  const Context ctx = Context::cpu();
  const Box owned{{0, 0, 0}, grid.size};
  DisplacementField w(grid, 3), w_border(grid, 3);
  compose_fields(ctx, {}, grid, affine, u.view(), ug, w.view(), owned, Boundary::FieldTransform);
  compose_fields(ctx, {}, grid, affine, u.view(), ug, w_border.view(), owned, Boundary::Border);

  index_t inside = 0, border = 0, outside = 0, near_edge = 0, border_rule_differs = 0;
  double worst[3] = {0, 0, 0};
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        const Vec3d x = grid.index_to_physical({double(i), double(j), double(k)});
        const Vec3d y = affine(x);
        const Vec3d p = ug.physical_to_index(y);
        // Which region of the field's grid y lies in; points within 1e-3 voxel of ITK's buffer
        // edge (index -0.5 or size - 0.5) are left out: float and double may fall either side.
        int region = 0;  // 0 inside [0, n-1], 1 last half voxel, 2 outside
        bool ambiguous = false;
        for (int a = 0; a < 3; ++a) {
          const double n = double(ug.size[a]);
          if (std::abs(p[a] + 0.5) < 1e-3 || std::abs(p[a] - (n - 0.5)) < 1e-3) ambiguous = true;
          if (p[a] < -0.5 || p[a] >= n - 0.5) region = 2;
          else if ((p[a] < 0 || p[a] > n - 1) && region < 1) region = 1;
        }
        if (ambiguous) {
          ++near_edge;
          continue;
        }
        const auto q = itk_transform->TransformPoint(itk::Point<double, 3>{{y.x, y.y, y.z}});
        double diff = 0, border_diff = 0;
        for (int a = 0; a < 3; ++a) {
          // gigareg's composed displacement w maps x to x + w(x) = y + u(y).
          diff = std::max(diff, std::abs(x[a] + double(w(i, j, k, a)) - q[a]));
          border_diff = std::max(border_diff, std::abs(x[a] + double(w_border(i, j, k, a)) - q[a]));
        }
        worst[region] = std::max(worst[region], diff);
        (region == 0 ? inside : region == 1 ? border : outside) += 1;
        if (border_diff > 0.1) ++border_rule_differs;
      }
  std::printf("  inside %lld, last half voxel %lld, outside %lld, left out near the edge %lld\n",
              (long long)inside, (long long)border, (long long)outside, (long long)near_edge);
  EXPECT_GT(inside, 2000);
  EXPECT_GT(border, 2000);
  EXPECT_GT(outside, 20000);
  EXPECT_LT(worst[0], 1e-4) << "mm, inside the field's grid";
  EXPECT_LT(worst[1], 1e-4) << "mm, in the last half voxel";
  EXPECT_LT(worst[2], 1e-4) << "mm, outside the field's grid (ITK: zero displacement)";
  // The set-up can tell the rules apart: carrying the edge outwards misses ITK's points outside.
  EXPECT_GT(border_rule_differs, outside / 2);
}

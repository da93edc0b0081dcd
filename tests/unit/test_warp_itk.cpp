// Phantom check against ITK: warping with a known affine between two different grids (size,
// spacing, origin, oblique direction) agrees with itk::ResampleImageFilter using the same
// itk::AffineTransform and linear interpolation, to 1e-4 of the intensity range.
#include <gtest/gtest.h>

#include <itkAffineTransform.h>
#include <itkImage.h>
#include <itkLinearInterpolateImageFunction.h>
#include <itkResampleImageFilter.h>

#include <cmath>
#include <random>

#include "gigareg/itk_adapters.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"

using namespace gigareg;

namespace {

Mat3d rotation(double ax, double ay, double az) {
  return make_affine({ax, ay, az}, {1, 1, 1}, {0, 0, 0}, {0, 0, 0}).matrix;
}

// A smooth image with structure at several scales (values in [0, 1000]).
Volume<float> smooth_image(const Geometry& g, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> freq(0.02, 0.15), phase(0, 6.28);
  double f[3][3], ph[3];
  for (int m = 0; m < 3; ++m) {
    for (int a = 0; a < 3; ++a) f[m][a] = freq(rng);
    ph[m] = phase(rng);
  }
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d p = g.index_to_physical({double(i), double(j), double(k)});
        double s = 0;
        for (int m = 0; m < 3; ++m) s += std::sin(f[m][0] * p.x + f[m][1] * p.y + f[m][2] * p.z + ph[m]);
        v(i, j, k) = float(500.0 + 160.0 * s);
      }
  return v;
}

}  // namespace

TEST(WarpAgainstItk, AffineBetweenObliqueGridsMatchesResampleImageFilter) {
  Geometry moving_grid;
  moving_grid.size = {40, 36, 30};
  moving_grid.spacing = {1.1, 0.9, 1.5};
  moving_grid.origin = {-20, -15, -22};
  moving_grid.direction = rotation(5, -8, 12);
  Geometry fixed_grid;
  fixed_grid.size = {33, 41, 27};
  fixed_grid.spacing = {1.0, 0.8, 1.3};
  fixed_grid.origin = {-16, -18, -14};
  fixed_grid.direction = rotation(-10, 4, 20);

  Volume<float> moving = smooth_image(moving_grid, 3);
  const Affined affine = make_affine({6, -4, 9}, {1.05, 0.95, 1.02}, {1.5, -2.0, 0.7}, {0.5, -1.0, 2.0});

  // gigareg
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = moving_grid;
  in.fixed_geometry = fixed_grid;
  in.affine = affine;
  in.interpolation = Interpolation::Linear;
  in.boundary = Boundary::Zero;
  Volume<float> ours(fixed_grid);
  warp(Context::cpu(), in, ours.view(), Box{{0, 0, 0}, fixed_grid.size});

  // ITK
  using ImageType = itk::Image<float, 3>;
  ImageType::Pointer itk_moving = to_itk_image(moving);
  auto transform = itk::AffineTransform<double, 3>::New();
  itk::AffineTransform<double, 3>::MatrixType m;
  itk::AffineTransform<double, 3>::OutputVectorType t;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m(r, c) = affine.matrix(r, c);
    t[r] = affine.offset[r];
  }
  transform->SetMatrix(m);
  transform->SetOffset(t);
  auto resample = itk::ResampleImageFilter<ImageType, ImageType, double>::New();
  resample->SetInput(itk_moving);
  resample->SetTransform(transform);
  resample->SetInterpolator(itk::LinearInterpolateImageFunction<ImageType, double>::New());
  resample->SetDefaultPixelValue(0);
  ImageType::SizeType size;
  ImageType::SpacingType spacing;
  ImageType::PointType origin;
  ImageType::DirectionType direction;
  for (int a = 0; a < 3; ++a) {
    size[a] = fixed_grid.size[a];
    spacing[a] = fixed_grid.spacing[a];
    origin[a] = fixed_grid.origin[a];
    for (int c = 0; c < 3; ++c) direction(a, c) = fixed_grid.direction(a, c);
  }
  resample->SetSize(size);
  resample->SetOutputSpacing(spacing);
  resample->SetOutputOrigin(origin);
  resample->SetOutputDirection(direction);
  resample->Update();
  const float* itk_out = resample->GetOutput()->GetBufferPointer();

  // Compare where the sample lands inside the moving grid's voxel centres (both define the
  // same trilinear interpolant there; they differ only in the half voxel outside the centres).
  const double range = 1000.0;
  double worst = 0;
  index_t compared = 0;
  for (index_t k = 0; k < fixed_grid.size.z; ++k)
    for (index_t j = 0; j < fixed_grid.size.y; ++j)
      for (index_t i = 0; i < fixed_grid.size.x; ++i) {
        const Vec3d y = affine(fixed_grid.index_to_physical({double(i), double(j), double(k)}));
        const Vec3d c = moving_grid.physical_to_index(y);
        bool inside = true;
        for (int a = 0; a < 3; ++a) inside = inside && c[a] >= 0 && c[a] <= moving_grid.size[a] - 1;
        if (!inside) continue;
        const index_t n = (k * fixed_grid.size.y + j) * fixed_grid.size.x + i;
        worst = std::max(worst, std::abs(double(ours(i, j, k)) - itk_out[n]));
        ++compared;
      }
  EXPECT_GT(compared, fixed_grid.voxel_count() / 4) << "the transform should keep most samples inside";
  EXPECT_LT(worst / range, 1e-4) << "largest difference " << worst << " over " << compared << " voxels";
}

// Phantom checks against ITK: warping with a known affine between two different grids (size,
// spacing, origin, oblique direction) agrees with itk::ResampleImageFilter using the same
// itk::AffineTransform: linear interpolation to 1e-4 of the intensity range; and apply_transforms
// (ITK's resampler rule: interpolate inside the buffer, the default value outside) agrees with it
// everywhere for linear, nearest-neighbour and cubic B-spline interpolation, with and without a
// default value.
#include <gtest/gtest.h>

#include <itkAffineTransform.h>
#include <itkBSplineInterpolateImageFunction.h>
#include <itkImage.h>
#include <itkLinearInterpolateImageFunction.h>
#include <itkNearestNeighborInterpolateImageFunction.h>
#include <itkResampleImageFilter.h>

#include <cmath>
#include <random>

#include "gigareg/itk_adapters.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"
#include "gigareg/registration.hpp"

using namespace gigareg;

namespace {

using ImageType = itk::Image<float, 3>;

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

// Two oblique, anisotropic grids and an affine between them that sends part of the fixed grid
// outside the moving one.
struct Scene {
  Geometry moving_grid, fixed_grid;
  mutable Volume<float> moving;  // ITK's filter wraps it without copying (non-const)
  Affined affine;
  Scene() {
    moving_grid.size = {40, 36, 30};
    moving_grid.spacing = {1.1, 0.9, 1.5};
    moving_grid.origin = {-20, -15, -22};
    moving_grid.direction = rotation(5, -8, 12);
    fixed_grid.size = {33, 41, 27};
    fixed_grid.spacing = {1.0, 0.8, 1.3};
    fixed_grid.origin = {-16, -18, -14};
    fixed_grid.direction = rotation(-10, 4, 20);
    moving = smooth_image(moving_grid, 3);
    affine = make_affine({6, -4, 9}, {1.05, 0.95, 1.02}, {1.5, -2.0, 0.7}, {0.5, -1.0, 2.0});
  }
  // The warp op's inputs for the scene's affine.
  WarpInputs warp_inputs(Interpolation interpolation, Boundary boundary) const {
    WarpInputs in;
    in.moving = moving.view();
    in.moving_geometry = moving_grid;
    in.fixed_geometry = fixed_grid;
    in.affine = affine;
    in.interpolation = interpolation;
    in.boundary = boundary;
    return in;
  }
  // Where the sample of fixed voxel (i, j, k) lands, in moving index units.
  Vec3d moving_index(index_t i, index_t j, index_t k) const {
    return moving_grid.physical_to_index(affine(fixed_grid.index_to_physical({double(i), double(j), double(k)})));
  }
};

// itk::ResampleImageFilter of the scene's moving image onto its fixed grid.
ImageType::Pointer itk_resample(const Scene& s, itk::InterpolateImageFunction<ImageType, double>* interpolator,
                                float default_value) {
  auto transform = itk::AffineTransform<double, 3>::New();
  itk::AffineTransform<double, 3>::MatrixType m;
  itk::AffineTransform<double, 3>::OutputVectorType t;
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) m(r, c) = s.affine.matrix(r, c);
    t[r] = s.affine.offset[r];
  }
  transform->SetMatrix(m);
  transform->SetOffset(t);
  auto resample = itk::ResampleImageFilter<ImageType, ImageType, double>::New();
  resample->SetInput(to_itk_image(s.moving));
  resample->SetTransform(transform);
  resample->SetInterpolator(interpolator);
  resample->SetDefaultPixelValue(default_value);
  ImageType::SizeType size;
  ImageType::SpacingType spacing;
  ImageType::PointType origin;
  ImageType::DirectionType direction;
  for (int a = 0; a < 3; ++a) {
    size[a] = s.fixed_grid.size[a];
    spacing[a] = s.fixed_grid.spacing[a];
    origin[a] = s.fixed_grid.origin[a];
    for (int c = 0; c < 3; ++c) direction(a, c) = s.fixed_grid.direction(a, c);
  }
  resample->SetSize(size);
  resample->SetOutputSpacing(spacing);
  resample->SetOutputOrigin(origin);
  resample->SetOutputDirection(direction);
  resample->Update();
  return resample->GetOutput();
}

// apply_transforms of the scene (one affine) with the given interpolation and default value.
Volume<float> ours_apply(const Scene& s, Interpolation interpolation, float default_value) {
  TransformEntry a;
  a.affine = s.affine;
  return apply_transforms(s.moving, s.fixed_grid, {a}, interpolation, DeviceChoice::Cpu, default_value);
}

struct Agreement {
  double worst = 0;          // largest |ours - ITK|
  index_t differing = 0;     // voxels that differ by more than 1e-4 of the range
  index_t outside = 0;       // voxels whose sample leaves ITK's buffer
  index_t half_voxel = 0;    // voxels in the half voxel between the last centre and the buffer edge
};

Agreement compare_everywhere(const Scene& s, const Volume<float>& ours, const ImageType* itk_out) {
  const double range = 1000.0;
  Agreement r;
  const Geometry& g = s.fixed_grid;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d c = s.moving_index(i, j, k);
        bool in_buffer = true, in_centres = true;
        for (int a = 0; a < 3; ++a) {
          in_buffer = in_buffer && c[a] >= -0.5 && c[a] < s.moving_grid.size[a] - 0.5;
          in_centres = in_centres && c[a] >= 0 && c[a] <= s.moving_grid.size[a] - 1;
        }
        r.outside += !in_buffer;
        r.half_voxel += in_buffer && !in_centres;
        const float theirs = itk_out->GetBufferPointer()[(k * g.size.y + j) * g.size.x + i];
        const double d = std::abs(double(ours(i, j, k)) - double(theirs));
        r.worst = std::max(r.worst, d);
        r.differing += d > 1e-4 * range;
      }
  return r;
}

}  // namespace

TEST(WarpAgainstItk, AffineBetweenObliqueGridsMatchesResampleImageFilter) {
  const Scene s;
  WarpInputs in = s.warp_inputs(Interpolation::Linear, Boundary::Zero);
  Volume<float> ours(s.fixed_grid);
  warp(Context::cpu(), in, ours.view(), Box{{0, 0, 0}, s.fixed_grid.size});
  const auto itk_out = itk_resample(s, itk::LinearInterpolateImageFunction<ImageType, double>::New(), 0.f);

  // Boundary::Zero (the registration's rule) agrees where the sample lands inside the moving
  // grid's voxel centres; over the last half voxel it fades to 0 where ITK keeps the edge value.
  double worst = 0;
  index_t compared = 0;
  for (index_t k = 0; k < s.fixed_grid.size.z; ++k)
    for (index_t j = 0; j < s.fixed_grid.size.y; ++j)
      for (index_t i = 0; i < s.fixed_grid.size.x; ++i) {
        const Vec3d c = s.moving_index(i, j, k);
        bool inside = true;
        for (int a = 0; a < 3; ++a) inside = inside && c[a] >= 0 && c[a] <= s.moving_grid.size[a] - 1;
        if (!inside) continue;
        const index_t n = (k * s.fixed_grid.size.y + j) * s.fixed_grid.size.x + i;
        worst = std::max(worst, std::abs(double(ours(i, j, k)) - itk_out->GetBufferPointer()[n]));
        ++compared;
      }
  EXPECT_GT(compared, s.fixed_grid.voxel_count() / 4) << "the transform should keep most samples inside";
  EXPECT_LT(worst / 1000.0, 1e-4) << "largest difference " << worst << " over " << compared << " voxels";
}

TEST(ApplyAgainstItk, LinearMatchesResampleImageFilterEverywhereWithAndWithoutADefaultValue) {
  const Scene s;
  for (float default_value : {0.f, 137.5f}) {
    const Volume<float> ours = ours_apply(s, Interpolation::Linear, default_value);
    const auto theirs =
        itk_resample(s, itk::LinearInterpolateImageFunction<ImageType, double>::New(), default_value);
    const Agreement a = compare_everywhere(s, ours, theirs);
    EXPECT_GT(a.outside, s.fixed_grid.voxel_count() / 20) << "the scene must reach outside the moving grid";
    EXPECT_GT(a.half_voxel, 0) << "the scene must sample the half voxel beyond the last centres";
    EXPECT_EQ(a.differing, 0) << "default " << default_value << ": largest difference " << a.worst;
  }
}

TEST(ApplyAgainstItk, NearestNeighbourMatchesResampleImageFilterEverywhere) {
  const Scene s;
  const Volume<float> ours = ours_apply(s, Interpolation::Nearest, -3.f);
  const auto theirs =
      itk_resample(s, itk::NearestNeighborInterpolateImageFunction<ImageType, double>::New(), -3.f);
  const Agreement a = compare_everywhere(s, ours, theirs);
  // Only a sample within float rounding of a half-integer index (or of the buffer edge) may pick
  // the other neighbour: gigareg maps indices in float, ITK in double.
  EXPECT_LE(a.differing, s.fixed_grid.voxel_count() / 10000) << "largest difference " << a.worst;
}

TEST(ApplyAgainstItk, CubicBSplineMatchesResampleImageFilterEverywhere) {
  const Scene s;
  for (float default_value : {0.f, 42.f}) {
    const Volume<float> ours = ours_apply(s, Interpolation::BSpline, default_value);
    auto bspline = itk::BSplineInterpolateImageFunction<ImageType, double, double>::New();
    bspline->SetSplineOrder(3);
    const auto theirs = itk_resample(s, bspline, default_value);
    const Agreement a = compare_everywhere(s, ours, theirs);
    EXPECT_EQ(a.differing, 0) << "default " << default_value << ": largest difference " << a.worst;
    EXPECT_LT(a.worst, 1e-2) << "B-spline coefficients and taps in double, as ITK";
  }
}

TEST(ApplyAgainstItk, BSplineIsRefusedOnTheCudaBackendAndWithTheRegistrationBoundary) {
  const Scene s;
  WarpInputs in = s.warp_inputs(Interpolation::BSpline, Boundary::Zero);
  Volume<float> out(s.fixed_grid);
  EXPECT_THROW(warp(Context::cpu(), in, out.view(), Box{{0, 0, 0}, s.fixed_grid.size}), Error);
  in.boundary = Boundary::FieldTransform;
  in.interpolation = Interpolation::Linear;
  in.outside_value = 1.f;
  EXPECT_NO_THROW(warp(Context::cpu(), in, out.view(), Box{{0, 0, 0}, s.fixed_grid.size}));
  in.boundary = Boundary::Zero;
  EXPECT_THROW(warp(Context::cpu(), in, out.view(), Box{{0, 0, 0}, s.fixed_grid.size}), Error)
      << "an outside value belongs to ITK's resampler rule only";
}

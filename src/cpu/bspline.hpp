#pragma once
// Cubic B-spline coefficients of an image (src/cpu/bspline.cpp): what the warp's BSpline
// interpolation samples (include/gigareg/device/interpolate.hpp, sample_bspline3).

#include "gigareg/volume.hpp"

namespace gigareg::cpu {

/// The coefficients c with sum_k c[k] beta3(x - k) = image at every voxel centre, for ITK's
/// mirror boundary (itk::BSplineDecompositionImageFilter of order 3): the recursive filter of
/// pole sqrt(3) - 2 along x, then y, then z, in double. `image` must hold the whole grid.
Volume<double> bspline3_coefficients(VolumeView<const float> image);

}  // namespace gigareg::cpu

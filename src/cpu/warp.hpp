#pragma once
// CPU reference of the warp ops (src/cpu/warp.cpp). Called only by src/ops/warp.cpp after it has
// checked the arguments.

#include "gigareg/device/warp.hpp"

namespace gigareg::cpu {

void warp(const WarpPlan& plan, VolumeView<const float> moving, VolumeView<const float> displacement,
          VolumeView<float> out, const Box& owned, Interpolation interpolation, Boundary boundary);

/// warp with Interpolation::BSpline: samples the moving image's B-spline coefficients
/// (bspline3_coefficients, src/cpu/bspline.hpp) of the whole moving grid.
void warp_bspline(const WarpPlan& plan, VolumeView<const double> coefficients,
                  VolumeView<const float> displacement, VolumeView<float> out, const Box& owned,
                  Boundary boundary);

/// grad_u, affine_partials (kAffineTerms per slice of owned) and grad_moving are optional
/// (null data / pointer).
void warp_backward(const WarpPlan& plan, VolumeView<const float> moving,
                   VolumeView<const float> displacement, VolumeView<const float> grad_out,
                   const Box& owned, Boundary boundary, VolumeView<float> grad_u,
                   double* affine_partials, VolumeView<float> grad_moving);

}  // namespace gigareg::cpu

#pragma once
// Warping the moving image into the fixed grid, and the gradient of that warp.
//
//   out(x) = I(T(x)),   T(x) = A(x + u(x))
// x: physical point (LPS, mm) of a fixed-grid voxel (global index); u: optional displacement field
// on the fixed grid (mm, three component planes); A: affine, physical fixed -> moving (y = M z + t);
// I: the moving image on its own grid (any size, spacing, origin, direction). The sampling grid is
// never built: the chain fixed index -> physical -> A -> moving index is folded into one affine
// on the host (make_warp_plan, double) and applied per voxel in float (device/warp.hpp).
// Interpolation and boundary rules: device/interpolate.hpp.
//
// Boxes and halos: writes only `owned` (global indices of the fixed grid), which must lie inside
// `out` (and the gradient views). The displacement view must contain `owned` (halo 0). The moving
// view is a box of the moving grid that must cover where the samples land plus one voxel for the
// linear taps (the whole moving image when unsharded); taps outside it read as 0.

#include "gigareg/device/interpolate.hpp"
#include "gigareg/device/warp.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

struct WarpInputs {
  VolumeView<const float> moving;        // 1 component, a box of the moving grid
  Geometry moving_geometry;              // the whole moving grid
  Geometry fixed_geometry;               // the whole fixed (output) grid
  Affined affine = Affined::identity();  // physical fixed -> moving
  VolumeView<const float> displacement;  // optional (data == nullptr: u = 0); 3 components,
                                         // fixed grid, contains owned
  Interpolation interpolation = Interpolation::Linear;
  Boundary boundary = Boundary::Zero;
  /// With Boundary::FieldTransform (ITK's resampler rule): the value of output voxels whose
  /// sample leaves the moving grid's buffer (antsApplyTransforms -f). Must be 0 otherwise.
  float outside_value = 0.f;
};

/// out(i) = I(A(x_i + u(i))) for every voxel i of `owned`; `out` is 1 component on the fixed grid.
void warp(const Context& ctx, const WarpInputs& in, VolumeView<float> out, const Box& owned);

/// Gradient outputs of warp_backward; each is optional (null data: not computed).
struct WarpGradients {
  /// dL/du, 3 components on the fixed grid; written on `owned` (overwritten, not accumulated).
  /// grad_out may be this field's first component plane (the same voxels): each voxel's
  /// grad_out is read before its dL/du is written, so the loss gradient needs no volume of its own.
  VolumeView<float> displacement;
  /// dL/d[M | t]: kAffineTerms (12) doubles per z slice of `owned` (slices = owned.size.z), in
  /// ctx's memory; each slice summed in a fixed order that depends only on the slice (CPU: each
  /// row in x order in double, rows in y order; CUDA: short per-thread float sums, then double
  /// over fixed block trees and row groups in order), so slabs reproduce the whole-volume
  /// partials bitwise. Sum with reduce_slices.
  SlicePartials affine;
  /// dL/dI, CPU backend only: ACCUMULATED (+=) into this view, which must have the moving view's
  /// box. Scattered serially in (z, y, x) order of `owned`, so it is deterministic and running
  /// z-slabs in order into one buffer reproduces the whole-volume result bitwise. The caller
  /// zeroes it. Not offered on CUDA (it would need float atomics).
  VolumeView<float> moving;
};

/// Back-propagates grad_out = dL/dout (on `owned`, 1 component, fixed grid) through the warp.
/// Linear interpolation only. Recomputes the sample positions (nothing is stored by warp()).
/// dL/du(i) = g(i) G^T grad_m I(m(i)); dL/dM = sum_i g(i) Pm^-T grad_m I (x_i + u_i)^T;
/// dL/dt = sum_i g(i) Pm^-T grad_m I. At the knots of the trilinear interpolant (integer moving
/// coordinates) the one-sided derivative from above is used; where a coordinate is clamped by
/// Boundary::Border the derivative along it is 0.
void warp_backward(const Context& ctx, const WarpInputs& in, VolumeView<const float> grad_out,
                   const Box& owned, const WarpGradients& grads);

/// The folded maps for fused kernels (and for the ops above). Matrix and offset entries with
/// magnitude below 1e-9 are flushed to 0, so that an identity transform or an integer shift
/// between grids that agree is exact in float despite double rounding in the fold.
WarpPlan make_warp_plan(const Geometry& fixed, const Geometry& moving, const Affined& affine);

}  // namespace gigareg

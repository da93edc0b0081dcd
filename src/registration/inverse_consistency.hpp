#pragma once
// How far a written inverse warp is from inverting the warp, as a user checks it: the inverse
// consistency r(x) = |u(x) + w(x + u(x))| over the fixed image's foreground.

#include "gigareg/ops/context.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

/// The damped inversion to the registration's inverse tolerance: the largest residual at most
/// params.inverse_tolerance_mm (in voxels of the smallest spacing of `g`), at most
/// params.inverse_iterations updates (at least 1), Newton's correction.
DampedInverseOptions final_inverse_options(const RegistrationParams& params, const Geometry& g);

/// `field` (u) and `inverse` (w), both covering the whole fixed grid (one process), are inverses
/// up to interpolation (a SyN stage's compositions of its half-way fields, their resampling onto
/// the full grid: about 0.1 voxel at the 99.9th percentile). As ITK keeps each half-way field the
/// inverse of its inverse, u is made the inverse of w: invert_field_damped of w starting from u, to
/// params.inverse_tolerance_mm (largest residual) in at most params.inverse_iterations updates. u
/// moves by that interpolation error only, and a point taken to the moving space and back,
/// x + u(x) + w(x + u(x)), returns to x within the tolerance.
void make_inverse_pair(const Context& ctx, Volume<float>& field, const Volume<float>& inverse,
                       const RegistrationParams& params);

/// The inverse consistency of `inverse` (w) against `field` (u), both on the fixed grid covering it
/// whole (one process): r(x) = |u(x) + w(x + u(x))| with w evaluated as a written warp is
/// (Boundary::FieldTransform: zero displacement outside its grid), over the foreground of `fixed`
/// (host, the whole grid: voxels with intensity >= 10% of its maximum). Logs (info) the 50th, 90th,
/// 99th and 99.9th percentiles and the largest, in mm and in voxels of the smallest fixed spacing,
/// and warns when the 99.9th percentile exceeds 0.1 voxel. Returns the largest r over the
/// foreground (mm).
double log_inverse_consistency(const Context& ctx, const Volume<float>& field,
                               const Volume<float>& inverse, const Volume<float>& fixed);

}  // namespace gigareg::reg

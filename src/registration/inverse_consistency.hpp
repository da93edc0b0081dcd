#pragma once
// How far a written inverse warp is from inverting the warp, as a user checks it: the inverse
// consistency r(x) = |u(x) + w(x + u(x))| over the fixed image's foreground.

#include "gigareg/ops/context.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

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

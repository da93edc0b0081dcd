#pragma once
// Displacement-field algebra: composition (optionally through an affine), resampling onto another
// grid, scaling and squaring, fixed-point inversion, Jacobian determinant.
//
// Fields are physical displacements in mm (LPS), three component planes, on a grid given by a
// Geometry; a field u maps x to x + u(x). Fields read at arbitrary positions (the `u` of compose,
// resample and invert) are sampled trilinearly (device/interpolate.hpp) with the given boundary
// rule; Boundary::Border (replicate the edge displacement) is the default and the rule of the
// registration's own fields: a displacement does not drop to 0 outside its grid. A field applied
// as a transform of points (a written warp in apply_transforms) takes Boundary::FieldTransform,
// ITK's DisplacementFieldTransform rule (0 beyond the last half voxel).
//
// Boxes and halos: each op writes only `owned` (global indices of the output grid). The view of a
// field sampled at arbitrary positions must cover where the samples land (+1 voxel for the linear
// taps); for a whole-volume run it is the whole field. Pointwise inputs (v, the initial guess)
// must contain `owned` (halo 0). The Jacobian needs halo 1 (clipped to the grid).
// Aliasing: `out` may be the same memory as `v` or `initial` (each voxel is read before it is
// written, by the same thread), never the same as a field sampled at arbitrary positions.

#include "gigareg/device/field.hpp"
#include "gigareg/device/interpolate.hpp"
#include "gigareg/geometry.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

/// The halo of a field on `g` sampled at x + d(x) with |d| <= bound_mm (compose_fields' u,
/// invert_field's u, a warp's displacement): per axis the bound in voxels of that axis, rounded up
/// with a relative margin for float rounding, plus one voxel for the upper linear tap; at most the
/// grid's size.
Index3 displacement_sample_halo(const Geometry& g, double bound_mm);

/// w such that x + w(x) = y + u(y), y = A(x + v(x)):  w(x) = A(x + v(x)) + u(A(x + v(x))) - x.
/// v (optional: null data = 0) and out live on `grid`; u on `u_grid`. With A the identity this
/// is exactly v(x) + u(x + v(x)) (the compositive update u <- v + u o (x + v) is
/// compose_fields(v, u) with out != u).
void compose_fields(const Context& ctx, VolumeView<const float> v, const Geometry& grid,
                    const Affined& affine, VolumeView<const float> u, const Geometry& u_grid,
                    VolumeView<float> out, const Box& owned, Boundary boundary = Boundary::Border);

/// w(x) = v(x) + u(x + v(x)).
void compose_fields(const Context& ctx, VolumeView<const float> v, const Geometry& grid,
                    VolumeView<const float> u, const Geometry& u_grid, VolumeView<float> out,
                    const Box& owned, Boundary boundary = Boundary::Border);

/// out(x) = u(x): u (on `u_grid`) sampled trilinearly at the physical points of `grid`. Values
/// are mm, so changing the resolution needs no rescaling (pyramid up/down-sampling of fields).
void resample_field(const Context& ctx, VolumeView<const float> u, const Geometry& u_grid,
                    const Geometry& grid, VolumeView<float> out, const Box& owned,
                    Boundary boundary = Boundary::Border);

/// exp(v) by scaling and squaring: w = v / 2^steps, then `steps` times w <- w + w(x + w).
/// Whole-grid op: v and out must both cover the whole of `grid` (every squaring reads the previous
/// field everywhere; a sharded caller composes the steps itself with compose_fields and halo
/// exchanges). out may alias v. Uses one field-sized scratch buffer (host or stream-ordered
/// device memory). steps in [0, 30].
void exp_field(const Context& ctx, VolumeView<const float> v, const Geometry& grid, int steps,
               VolumeView<float> out, Boundary boundary = Boundary::Border);

struct InverseOptions {
  int iterations = 20;       // at most this many fixed-point updates per voxel
  double tolerance = 1e-3;   // mm: a voxel stops when |w + u(x + w)| <= tolerance
  Boundary boundary = Boundary::Border;
};

/// The inverse of x -> x + u(x) by per-voxel fixed-point iteration w <- -u(x + w), so that
/// w(x) + u(x + w(x)) ~ 0, i.e. (x + w(x)) + u(x + w(x)) = x. u lives on `u_grid`, out on `grid`.
/// `initial` (optional, on `grid`, contains owned) is the starting guess (a previous inverse);
/// 0 when null. Each voxel iterates independently, so the result does not depend on sharding.
/// `residual` (optional): 2 terms per z slice of owned: [0] the largest final residual
/// |w + u(x + w)| of the slice (mm; combine slices with max_over_slices), [1] the number of voxels
/// that did not reach the tolerance (sum with reduce_slices).
void invert_field(const Context& ctx, VolumeView<const float> u, const Geometry& u_grid,
                  const Geometry& grid, VolumeView<float> out, const Box& owned,
                  const InverseOptions& options = {}, VolumeView<const float> initial = {},
                  SlicePartials residual = {});

/// ITK's InvertDisplacementFieldImageFilter, which ANTs' SyN runs on each half-way field every
/// iteration. Tolerances are in voxels of `grid` (|P^-1 e|, P the grid's index -> physical map).
struct DampedInverseOptions {
  int iterations = 20;          // at most this many updates
  double mean_tolerance = 1e-3; // stop once the mean residual over the grid is at most this ...
  double max_tolerance = 0.1;   // ... or the largest residual is at most this
  bool pin_boundary = true;     // the outermost voxel layer of the inverse is held at 0
  // gigareg's extension: each correction -e becomes -(I + dw/dx) e, Newton's step (I + dw/dx at x
  // is (I + du/dx)^-1 at x + w). ITK's plain correction contracts the error by 1 - epsilon lambda
  // per update, lambda the eigenvalues of I + du/dx: slowly where u compresses (lambda near 0) and
  // not at all where it stretches by more than 2 / epsilon, which an inverse of a compressing map
  // does. The SyN iterations run ITK's scheme; the final inverses run this one.
  bool newton = false;
  // How u is read outside its grid: ITK's composer reads 0 (FieldTransform), right for SyN's
  // half-way fields, which are 0 on the boundary; a greedy field that moves the boundary is read
  // with Border, the rule of the registration's own fields (invert_field's default).
  Boundary boundary = Boundary::FieldTransform;
};

/// The residuals measured before the last update (voxels), and the number of updates made.
struct DampedInverseReport {
  int iterations = 0;
  double mean_error = 0, max_error = 0;
};

/// The inverse w of x -> x + u(x) by ITK's damped global iteration, starting from w (in/out; a
/// previous inverse, or zeros). Each update: e = w + u(x + w) (compose_fields with
/// options.boundary: by default Boundary::FieldTransform, u is 0 outside its grid, as ITK's
/// composer), the largest and mean
/// |e| in voxels over the grid; stop when `iterations` updates were made or either is within its
/// tolerance; else w <- w - epsilon clip(e) (with `newton`, e replaced by (I + dw/dx) e) with
/// epsilon 0.75 for the first update and 0.5 after,
/// and clip(e) shortened to at most epsilon times the largest |e| (device/field.hpp,
/// damped_inverse_voxel); with pin_boundary the outermost layer of w is then set to 0. Unlike
/// invert_field's per-voxel fixed point, which diverges where |du/dx| > 1, the damped update
/// converges wherever the map is invertible, and where it folds it stays bounded.
/// Whole-grid op (every update reads w everywhere): u and w cover the whole of `grid`, u != w.
/// `scratch` (optional, 3 components, whole grid, neither u nor w) holds e; allocated when null.
/// One host synchronisation per update (the residuals decide whether to go on).
DampedInverseReport invert_field_damped(const Context& ctx, VolumeView<const float> u,
                                        const Geometry& grid, VolumeView<float> w,
                                        const DampedInverseOptions& options = {},
                                        VolumeView<float> scratch = {});

/// Sets the displacement of the voxels of `owned` that lie on the outermost voxel layer of the
/// global grid to 0 (ITK's SyN smoothing and inverter hold the image boundary in place).
void zero_field_boundary(const Context& ctx, VolumeView<float> field, const Geometry& grid,
                         const Box& owned);

/// det(J), J = I + dU/dx: the Jacobian of x -> x + u(x) in physical space. dU/di by central
/// differences in index space (one-sided at the global grid edges, 0 along an axis of size 1),
/// converted with dU/dx = dU/di (D diag(spacing))^-1. u: halo 1 around owned (clipped).
/// `det` (optional, 1 component on `grid`) receives the determinant on owned; `nonpositive`
/// (optional, 1 term per z slice of owned) the count of voxels with det <= 0 (or NaN).
void jacobian_determinant(const Context& ctx, VolumeView<const float> u, const Geometry& grid,
                          VolumeView<float> det, const Box& owned, SlicePartials nonpositive = {});

/// The largest value of `term` over the slices of `partials` (for per-slice maxima such as the
/// residual of invert_field); synchronises with the device like reduce_slices. -inf when empty.
double max_over_slices(const Context& ctx, const SlicePartials& partials, int term);

/// Folded maps of compose_fields (grid index -> u index through the affine). Entries below 1e-9
/// in magnitude are flushed to 0, as in make_warp_plan.
ComposePlan make_compose_plan(const Geometry& grid, const Affined& affine, const Geometry& u_grid);

}  // namespace gigareg

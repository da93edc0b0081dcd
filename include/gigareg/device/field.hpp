#pragma once
// Per-voxel math of the displacement-field ops (include/gigareg/ops/field.hpp), shared by the CPU
// reference and the CUDA kernels. Fields are physical displacements (mm) in three component
// planes; positions are folded into float affines on the host (make_compose_plan).

#include "gigareg/device/interpolate.hpp"
#include "gigareg/device/warp.hpp"

namespace gigareg {

/// For voxel i of the output grid (physical x = Pf i + of) with displacement v(i), the composed
/// displacement through the affine y = M z + t and the field u on its own grid (Pu, ou):
///   y = M (x + v) + t,  w = y + u(y) - x = R i + r0 + M v + u(Q i + q0 + G v)
/// with R = (M - I) Pf, r0 = (M - I) of + t, Q = Pu^-1 M Pf, q0 = Pu^-1 (M of + t - ou),
/// G = Pu^-1 M. Writing w this way (instead of y - x) keeps float precision independent of the
/// size of the physical coordinates, and with M = I, t = 0 it is exactly v + u(x + v).
struct ComposePlan {
  Mat3f index_matrix;         // Q: output index -> u index
  Vec3f index_offset;         // q0
  Mat3f displacement_matrix;  // G: mm -> u index
  Mat3f rest_matrix;          // R
  Vec3f rest_offset;          // r0
  Mat3f affine_matrix;        // M
};

template <class T>
GIGAREG_HDI Vec3f compose_voxel(const ComposePlan& plan, const VolumeView<T>& u, index_t i,
                                index_t j, index_t k, Vec3f v, Boundary boundary) {
  const Vec3f idx = index_vec(i, j, k);
  const Vec3f p = plan.index_matrix * idx + plan.index_offset + plan.displacement_matrix * v;
  const Vec3f s = sample_linear3(u, p, boundary);
  return plan.rest_matrix * idx + plan.rest_offset + plan.affine_matrix * v + s;
}

GIGAREG_HDI float norm3(Vec3f a) { return sqrtf(a.x * a.x + a.y * a.y + a.z * a.z); }

/// Fixed-point inversion at one voxel (plan built with the identity affine: Q, q0 map the
/// output grid to u's grid, G = Pu^-1). Starting from w, iterates w <- -u(x + w) until the
/// residual |w + u(x + w)| (mm) is <= tolerance or `iterations` updates were made. Returns w and
/// the residual of the returned w.
template <class T>
GIGAREG_HDI Vec3f invert_voxel(const ComposePlan& plan, const VolumeView<T>& u, index_t i,
                               index_t j, index_t k, Vec3f w, int iterations, float tolerance,
                               Boundary boundary, float& residual) {
  const Vec3f base = plan.index_matrix * index_vec(i, j, k) + plan.index_offset;
  for (int it = 0;; ++it) {
    const Vec3f s = sample_linear3(u, base + plan.displacement_matrix * w, boundary);
    residual = norm3(w + s);
    if (!(residual > tolerance) || it >= iterations) break;  // NaN stops too
    w = {-s.x, -s.y, -s.z};
  }
  return w;
}

/// Whether global index g lies on the outermost voxel layer of a grid of `size` (where ITK's SyN
/// and its inverter hold the displacement at 0).
GIGAREG_HDI bool on_grid_boundary(Index3 g, Index3 size) {
  return g.x == 0 || g.y == 0 || g.z == 0 || g.x == size.x - 1 || g.y == size.y - 1 ||
         g.z == size.z - 1;
}

/// |P^-1 e|: a physical displacement e (mm) in voxels of the grid (P^-1 = `inverse_index_map`,
/// physical -> index; ITK's norm of e scaled by the spacing, on any direction matrix).
GIGAREG_HDI float norm_in_voxels(const Mat3f& inverse_index_map, Vec3f e) {
  return norm3(inverse_index_map * e);
}

/// One update of the damped inversion at a voxel (ITK's InvertDisplacementFieldImageFilter):
/// e = w + u(x + w) is the voxel's residual, `norm` its norm in voxels; the correction -e is
/// shortened to at most `clip` voxels (epsilon times the largest residual of the grid) and added
/// with weight `epsilon`. The clip keeps the voxels where the map folds (their residual does not
/// shrink) from dragging their neighbours' inverse along.
GIGAREG_HDI Vec3f damped_inverse_voxel(Vec3f w, Vec3f e, float norm, float epsilon, float clip) {
  const float scale = norm > clip ? epsilon * (clip / norm) : epsilon;
  return {w.x - scale * e.x, w.y - scale * e.y, w.z - scale * e.z};
}

/// w's new value at voxel g in one step of the damped inversion (the body of the CPU and CUDA
/// damped_inverse_step): 0 on the grid's outermost layer when `pin_boundary`, else
/// damped_inverse_voxel with the residual e at g.
GIGAREG_HDI Vec3f damped_inverse_step_voxel(const VolumeView<const float>& e, const VolumeView<float>& w,
                                            const Mat3f& inverse_index_map, float epsilon, float clip,
                                            bool pin_boundary, Index3 g) {
  if (pin_boundary && on_grid_boundary(g, w.global_size)) return {0.f, 0.f, 0.f};
  const Vec3f ev = load_vec3(e, g.x, g.y, g.z);
  return damped_inverse_voxel(load_vec3(w, g.x, g.y, g.z), ev, norm_in_voxels(inverse_index_map, ev), epsilon,
                              clip);
}

/// Finite difference of a field along `axis` at global index g: central inside the grid,
/// one-sided at the global grid edges, 0 for a grid of one voxel along the axis. The view must
/// contain the neighbours (halo 1, clipped to the grid).
template <class T>
GIGAREG_HDI Vec3f field_difference(const VolumeView<T>& u, Index3 g, int axis) {
  const index_t n = u.global_size[axis];
  if (n < 2) return {0.f, 0.f, 0.f};
  Index3 lo = g, hi = g;
  float scale = 1.f;
  if (g[axis] == 0) {
    hi[axis] += 1;
  } else if (g[axis] == n - 1) {
    lo[axis] -= 1;
  } else {
    lo[axis] -= 1;
    hi[axis] += 1;
    scale = 0.5f;
  }
  const Vec3f a = load_vec3(u, hi.x, hi.y, hi.z), b = load_vec3(u, lo.x, lo.y, lo.z);
  return {scale * (a.x - b.x), scale * (a.y - b.y), scale * (a.z - b.z)};
}

/// The field's derivatives with respect to the grid index at voxel g (field_difference along
/// each axis): d(c, a) = d u_c / d index_a.
template <class T>
GIGAREG_HDI Mat3f index_jacobian(const VolumeView<T>& u, Index3 g) {
  Mat3f d{};
  for (int a = 0; a < 3; ++a) {
    const Vec3f column = field_difference(u, g, a);
    d(0, a) = column.x;
    d(1, a) = column.y;
    d(2, a) = column.z;
  }
  return d;
}

/// (I + dW/dx) e at voxel g: the Jacobian of x -> x + w(x) (central differences as
/// jacobian_determinant_voxel, dW/dx = (dW/di) P^-1) times e. Where w inverts u, I + dW/dx at x is
/// (I + dU/dx)^-1 at x + w(x), so -(I + dW/dx) e is Newton's correction of the residual e.
template <class T>
GIGAREG_HDI Vec3f jacobian_times_voxel(const VolumeView<T>& w, const Mat3f& inverse_index_map,
                                       Index3 g, Vec3f e) {
  const Vec3f je = (index_jacobian(w, g) * inverse_index_map) * e;
  return {e.x + je.x, e.y + je.y, e.z + je.z};
}

/// Newton's direction for the damped inversion at voxel g: jacobian_times_voxel, no longer than
/// kNewtonMaxGain times e (voxel norms). Where w is still far from an inverse its finite-difference
/// Jacobian is not (I + du/dx)^-1 and the unbounded product can feed on itself.
constexpr float kNewtonMaxGain = 4.f;
template <class T>
GIGAREG_HDI Vec3f newton_direction_voxel(const VolumeView<T>& w, const Mat3f& inverse_index_map,
                                         Index3 g, Vec3f e) {
  const Vec3f d = jacobian_times_voxel(w, inverse_index_map, g, e);
  const float ne = norm3(inverse_index_map * e), nd = norm3(inverse_index_map * d);
  if (!(nd > kNewtonMaxGain * ne)) return d;
  const float s = kNewtonMaxGain * ne / nd;
  return {s * d.x, s * d.y, s * d.z};
}

/// det(I + dU/dx) at voxel g, with dU/dx = (dU/di) Pf^-1 (`inverse_index_map` = Pf^-1).
template <class T>
GIGAREG_HDI float jacobian_determinant_voxel(const VolumeView<T>& u, const Mat3f& inverse_index_map,
                                             Index3 g) {
  Mat3f jac = index_jacobian(u, g) * inverse_index_map;
  jac(0, 0) += 1.f;
  jac(1, 1) += 1.f;
  jac(2, 2) += 1.f;
  return determinant(jac);
}

}  // namespace gigareg

#pragma once
// Per-voxel math of the warp (include/gigareg/ops/warp.hpp), shared by the CPU reference and the
// CUDA kernels, and usable by fused kernels that sample the warped moving image on the fly.
//
// out(i) = I(m(i)), with the moving continuous index of fixed voxel i (global index)
//   m(i) = Q i + q0 + G u(i)
// where fixed index -> physical (Pf, of) -> affine (M, t) -> moving index (Pm^-1, om) is folded
// on the host in double (make_warp_plan) and applied here in float:
//   Q = Pm^-1 M Pf,  q0 = Pm^-1 (M of + t - om),  G = Pm^-1 M.
// Precision: m is computed in float from the global index, so its error is about
// 1e-7 * (|Q| |i| + |q0|) voxels (1e-4 voxel at i ~ 1000): far below what interpolation resolves.

#include "gigareg/device/interpolate.hpp"

namespace gigareg {

struct WarpPlan {
  Mat3f index_matrix;            // Q: fixed index -> moving index
  Vec3f index_offset;            // q0
  Mat3f displacement_matrix;     // G: physical displacement (mm) -> moving index
  Mat3f fixed_matrix;            // Pf = D diag(spacing) of the fixed grid
  Vec3f fixed_origin;            // of
  Mat3f moving_gradient_matrix;  // Pm^-T: gradient w.r.t. moving index -> w.r.t. physical point
  float outside_value;           // Boundary::FieldTransform: the value outside ITK's buffer
};

/// The affine gradient has 12 terms, row-major [M | t]: term 4 r + c is dL/dM(r, c) (c < 3) and
/// term 4 r + 3 is dL/dt(r), physical (mm), for the affine y = M x + t (fixed -> moving).
constexpr int kAffineTerms = 12;

GIGAREG_HDI Vec3f index_vec(index_t i, index_t j, index_t k) {
  return {float(i), float(j), float(k)};
}

/// The three component planes of a field at global index (i, j, k).
template <class T>
GIGAREG_HDI Vec3f load_vec3(const VolumeView<T>& f, index_t i, index_t j, index_t k) {
  const T* p = &f.at(i, j, k);
  return {float(load_ro(p)), float(load_ro(p + f.component_stride)),
          float(load_ro(p + 2 * f.component_stride))};
}

/// Writes the three component planes of a field at global index (i, j, k).
GIGAREG_HDI void store3(const VolumeView<float>& f, index_t i, index_t j, index_t k, Vec3f w) {
  f.at(i, j, k, 0) = w.x;
  f.at(i, j, k, 1) = w.y;
  f.at(i, j, k, 2) = w.z;
}

/// Moving continuous index sampled by fixed voxel (i, j, k) with displacement u (mm).
GIGAREG_HDI Vec3f warp_position(const WarpPlan& plan, index_t i, index_t j, index_t k, Vec3f u) {
  return plan.index_matrix * index_vec(i, j, k) + plan.index_offset +
         plan.displacement_matrix * u;
}

/// The warp's value at moving index p. Under Boundary::FieldTransform it is ITK's resampler
/// (ResampleImageFilter): the plan's outside value (antsApplyTransforms -f) where p leaves ITK's
/// buffer, the interpolated value inside; otherwise the boundary rule of `sample`.
template <Interpolation I, class T>
GIGAREG_HDI float warp_sample(const WarpPlan& plan, const VolumeView<T>& moving, Vec3f p,
                              Boundary boundary) {
  if (boundary == Boundary::FieldTransform && !inside_itk_buffer(p, moving.global_size))
    return plan.outside_value;
  return sample<I>(moving, p, boundary);
}

/// dL/du at one voxel from g = dL/dout and the moving image's index gradient gm: g G^T gm.
GIGAREG_HDI Vec3f warp_grad_displacement(const WarpPlan& plan, Vec3f gm, float g) {
  const Mat3f& G = plan.displacement_matrix;
  return {g * (G.m[0] * gm.x + G.m[3] * gm.y + G.m[6] * gm.z),
          g * (G.m[1] * gm.x + G.m[4] * gm.y + G.m[7] * gm.z),
          g * (G.m[2] * gm.x + G.m[5] * gm.y + G.m[8] * gm.z)};
}

/// Adds one voxel's contribution to the 12 affine-gradient terms: with the physical gradient
/// gy = g Pm^-T gm at the sample and z = x + u (the displaced fixed point, mm),
/// dL/dM += gy z^T and dL/dt += gy, in the accumulator's precision (the CPU reference sums in
/// double; the CUDA kernel keeps short per-thread float sums, see kernels/warp.cu).
template <class Acc>
GIGAREG_HDI void warp_accumulate_affine(const WarpPlan& plan, Vec3f gm, float g, index_t i,
                                        index_t j, index_t k, Vec3f u, Acc acc[kAffineTerms]) {
  const Vec3f gy = g * (plan.moving_gradient_matrix * gm);
  const Vec3f z = plan.fixed_matrix * index_vec(i, j, k) + plan.fixed_origin + u;
  for (int r = 0; r < 3; ++r) {
    const Acc gr = Acc(gy[r]);
    acc[4 * r + 0] += gr * Acc(z.x);
    acc[4 * r + 1] += gr * Acc(z.y);
    acc[4 * r + 2] += gr * Acc(z.z);
    acc[4 * r + 3] += gr;
  }
}

}  // namespace gigareg

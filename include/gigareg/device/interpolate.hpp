#pragma once
// Sampling a volume at a continuous global index: trilinear (with its gradient), nearest
// neighbour, and label voting. Written once for the CPU reference and the CUDA kernels.
//
// Boundary rules apply at the edge of the *global* grid, so a view of a window gives the same
// samples as the whole volume wherever the window covers the taps:
//   Boundary::Zero   the volume is 0 outside the grid. Trilinear: each of the 8 neighbours that
//                    lies outside the grid contributes 0 (so the value fades linearly to 0 over
//                    the last voxel: index -0.5 gives half the edge value, -1 or less gives 0;
//                    this is PyTorch's grid_sample(padding_mode="zeros", align_corners=True), not
//                    ITK's resampler, which gives the edge value up to -0.5 and 0 beyond).
//                    Nearest: 0 when the rounded index is outside. Label: the outside counts as
//                    label 0, with the trilinear weight of the outside neighbours.
//   Boundary::Border the coordinate is clamped to [0, size-1] per axis (replicate the edge); the
//                    gradient w.r.t. a clamped coordinate is 0.
//   Boundary::FieldTransform  ITK's itk::DisplacementFieldTransform (the rule of every ITK/ANTs
//                    tool that applies a displacement field to a point): a point whose continuous
//                    index lies in [-0.5, size - 0.5) on every axis (ImageFunction::IsInsideBuffer)
//                    gets the trilinear value with the neighbour indices clamped to the grid
//                    (VectorLinearInterpolateImageFunction), i.e. Border; any other point gets 0
//                    (the transform leaves it where it is). Not continuous at the half-voxel
//                    border, which is why the registration's own field ops keep Border.
// A neighbour that is inside the grid but outside the view reads as 0: the caller must give a
// view that covers where the samples land (+1 voxel for the linear taps); this is never a read
// out of bounds. NaN coordinates give 0 (Zero) or the clamped edge (Border); never UB.

#include <math.h>

#include "gigareg/device/view.hpp"

namespace gigareg {

enum class Interpolation {
  Linear,   // trilinear
  Nearest,  // nearest neighbour, halves rounded up (floor(p + 0.5), as ITK)
  Label,    // for each distinct label among the 8 neighbours, the sum of its trilinear weights;
            // the largest sum wins, ties go to the smaller label (ITK's
            // LabelImageGenericInterpolateImageFunction). Never invents a label.
  BSpline,  // cubic B-spline (ITK's BSplineInterpolateImageFunction of order 3, ANTs'
            // -n BSpline[3]): sampled from the image's B-spline coefficients (the warp op
            // computes them, src/cpu/bspline.cpp), mirror boundary. Resampling only (no gradient).
};

enum class Boundary { Zero, Border, FieldTransform };

/// Loads through the read-only (non-coherent) cache on the device; a plain load on the host.
template <class T>
GIGAREG_HDI T load_ro(const T* p) {
#if defined(__CUDA_ARCH__)
  return __ldg(p);
#else
  return *p;
#endif
}

/// The two linear taps along one axis of a continuous global coordinate.
struct AxisTaps {
  index_t off0 = 0, off1 = 0;  // element offsets in the view along this axis (0 when invalid)
  float w0 = 0, w1 = 0;        // weights (not masked by validity)
  float d0 = 0, d1 = 0;        // d w0 / dp, d w1 / dp (0 where the coordinate is clamped/outside)
  bool v0 = false, v1 = false; // the tap lies inside the grid and the view
};

/// `p`: continuous global coordinate; the view covers [view_lo, view_lo + view_n) of a grid of
/// `grid_n` voxels along this axis; `stride`: the view's element stride along it.
GIGAREG_HDI AxisTaps axis_taps(float p, index_t view_lo, index_t view_n, index_t grid_n,
                               index_t stride, Boundary boundary) {
  AxisTaps t;
  index_t i0 = 0, i1 = 0;
  // Outside ITK's buffer (or NaN): both taps invalid and weights 0, so the sample is 0.
  if (boundary == Boundary::FieldTransform && !(p >= -0.5f && p < float(grid_n) - 0.5f)) return t;
  if (boundary != Boundary::Zero) {
    const float hi = float(grid_n - 1);
    const bool inside = p >= 0.f && p <= hi;
    const float pc = fminf(fmaxf(p, 0.f), hi);  // fmaxf(NaN, 0) = 0
    const float f = floorf(pc);
    const float frac = pc - f;
    i0 = index_t(f);
    i1 = i0 + 1 < grid_n ? i0 + 1 : grid_n - 1;
    t.w0 = 1.f - frac;
    t.w1 = frac;
    t.d0 = inside ? -1.f : 0.f;
    t.d1 = inside ? 1.f : 0.f;
  } else {
    if (!(p > -1.f && p < float(grid_n))) return t;  // both taps outside (or NaN): all zero
    const float f = floorf(p);
    const float frac = p - f;
    i0 = index_t(f);
    i1 = i0 + 1;
    t.w0 = 1.f - frac;
    t.w1 = frac;
    t.d0 = -1.f;
    t.d1 = 1.f;
  }
  t.v0 = i0 >= view_lo && i0 < view_lo + view_n;
  t.v1 = i1 >= view_lo && i1 < view_lo + view_n;
  t.off0 = t.v0 ? (i0 - view_lo) * stride : 0;
  t.off1 = t.v1 ? (i1 - view_lo) * stride : 0;
  return t;
}

struct Taps3 {
  AxisTaps x, y, z;
};

/// The 2x2x2 linear taps of global continuous index `p` in `v`.
template <class T>
GIGAREG_HDI Taps3 linear_taps(const VolumeView<T>& v, Vec3f p, Boundary boundary) {
  return {axis_taps(p.x, v.box_lo.x, v.extent.x, v.global_size.x, v.stride.x, boundary),
          axis_taps(p.y, v.box_lo.y, v.extent.y, v.global_size.y, v.stride.y, boundary),
          axis_taps(p.z, v.box_lo.z, v.extent.z, v.global_size.z, v.stride.z, boundary)};
}

/// The 8 neighbour values of component `c` (0 for invalid taps), as n[z][y][x].
template <class T>
GIGAREG_HDI void gather8(const VolumeView<T>& v, const Taps3& t, int c, float n[2][2][2]) {
  const T* base = v.data + index_t(c) * v.component_stride;
  const index_t oz[2] = {t.z.off0, t.z.off1}, oy[2] = {t.y.off0, t.y.off1},
                ox[2] = {t.x.off0, t.x.off1};
  const bool vz[2] = {t.z.v0, t.z.v1}, vy[2] = {t.y.v0, t.y.v1}, vx[2] = {t.x.v0, t.x.v1};
  for (int cz = 0; cz < 2; ++cz)
    for (int b = 0; b < 2; ++b)
      for (int a = 0; a < 2; ++a)
        n[cz][b][a] = (vz[cz] && vy[b] && vx[a]) ? float(load_ro(base + oz[cz] + oy[b] + ox[a])) : 0.f;
}

/// Trilinear value from gathered neighbours: along x, then y, then z.
GIGAREG_HDI float trilinear_combine(const Taps3& t, const float n[2][2][2]) {
  const float r00 = t.x.w0 * n[0][0][0] + t.x.w1 * n[0][0][1];
  const float r10 = t.x.w0 * n[0][1][0] + t.x.w1 * n[0][1][1];
  const float r01 = t.x.w0 * n[1][0][0] + t.x.w1 * n[1][0][1];
  const float r11 = t.x.w0 * n[1][1][0] + t.x.w1 * n[1][1][1];
  const float s0 = t.y.w0 * r00 + t.y.w1 * r10;
  const float s1 = t.y.w0 * r01 + t.y.w1 * r11;
  return t.z.w0 * s0 + t.z.w1 * s1;
}

/// Trilinear value and its gradient w.r.t. the continuous index (d value / d p).
GIGAREG_HDI float trilinear_combine_grad(const Taps3& t, const float n[2][2][2], Vec3f& grad) {
  float r[2][2], dr[2][2];  // [z][y]: interpolated along x, and its x-derivative
  for (int c = 0; c < 2; ++c)
    for (int b = 0; b < 2; ++b) {
      r[c][b] = t.x.w0 * n[c][b][0] + t.x.w1 * n[c][b][1];
      dr[c][b] = t.x.d0 * n[c][b][0] + t.x.d1 * n[c][b][1];
    }
  const float s0 = t.y.w0 * r[0][0] + t.y.w1 * r[0][1];
  const float s1 = t.y.w0 * r[1][0] + t.y.w1 * r[1][1];
  const float ds0 = t.y.d0 * r[0][0] + t.y.d1 * r[0][1];
  const float ds1 = t.y.d0 * r[1][0] + t.y.d1 * r[1][1];
  const float dx0 = t.y.w0 * dr[0][0] + t.y.w1 * dr[0][1];
  const float dx1 = t.y.w0 * dr[1][0] + t.y.w1 * dr[1][1];
  grad.x = t.z.w0 * dx0 + t.z.w1 * dx1;
  grad.y = t.z.w0 * ds0 + t.z.w1 * ds1;
  grad.z = t.z.d0 * s0 + t.z.d1 * s1;
  return t.z.w0 * s0 + t.z.w1 * s1;
}

/// Trilinear sample of component `c` of `v` at global continuous index `p`.
template <class T>
GIGAREG_HDI float sample_linear(const VolumeView<T>& v, Vec3f p, Boundary boundary, int c = 0) {
  const Taps3 t = linear_taps(v, p, boundary);
  float n[2][2][2];
  gather8(v, t, c, n);
  return trilinear_combine(t, n);
}

/// Trilinear sample and its gradient w.r.t. the continuous index.
template <class T>
GIGAREG_HDI float sample_linear_grad(const VolumeView<T>& v, Vec3f p, Boundary boundary,
                                     Vec3f& grad, int c = 0) {
  const Taps3 t = linear_taps(v, p, boundary);
  float n[2][2][2];
  gather8(v, t, c, n);
  return trilinear_combine_grad(t, n, grad);
}

/// The three components of a displacement field (or any 3-component view) sampled at `p`,
/// sharing the taps.
template <class T>
GIGAREG_HDI Vec3f sample_linear3(const VolumeView<T>& v, Vec3f p, Boundary boundary) {
  const Taps3 t = linear_taps(v, p, boundary);
  Vec3f r;
  for (int c = 0; c < 3; ++c) {
    float n[2][2][2];
    gather8(v, t, c, n);
    r[c] = trilinear_combine(t, n);
  }
  return r;
}

/// Nearest-neighbour tap along one axis; returns false when it reads as 0.
GIGAREG_HDI bool axis_nearest(float p, index_t view_lo, index_t view_n, index_t grid_n,
                              index_t stride, Boundary boundary, index_t& off) {
  const float hi = float(grid_n - 1);
  float r;
  if (boundary == Boundary::Border) {
    r = floorf(fminf(fmaxf(p, 0.f), hi) + 0.5f);
  } else {  // Zero and FieldTransform: inside exactly on [-0.5, size - 0.5), as IsInsideBuffer
    if (!(p >= -0.5f && p < float(grid_n) - 0.5f)) return false;
    r = floorf(p + 0.5f);
  }
  r = fminf(fmaxf(r, 0.f), hi);  // float rounding right at the upper edge
  const index_t i = index_t(r);
  if (i < view_lo || i >= view_lo + view_n) return false;
  off = (i - view_lo) * stride;
  return true;
}

template <class T>
GIGAREG_HDI float sample_nearest(const VolumeView<T>& v, Vec3f p, Boundary boundary, int c = 0) {
  index_t ox = 0, oy = 0, oz = 0;
  if (!axis_nearest(p.x, v.box_lo.x, v.extent.x, v.global_size.x, v.stride.x, boundary, ox) ||
      !axis_nearest(p.y, v.box_lo.y, v.extent.y, v.global_size.y, v.stride.y, boundary, oy) ||
      !axis_nearest(p.z, v.box_lo.z, v.extent.z, v.global_size.z, v.stride.z, boundary, oz))
    return 0.f;
  return float(load_ro(v.data + index_t(c) * v.component_stride + ox + oy + oz));
}

/// Label voting over the 8 linear neighbours. Weights are w = (wz * wy) * wx; each distinct
/// label's weights are summed in neighbour order (x fastest), so the result is deterministic.
template <class T>
GIGAREG_HDI float sample_label(const VolumeView<T>& v, Vec3f p, Boundary boundary, int c = 0) {
  const Taps3 t = linear_taps(v, p, boundary);
  float n[2][2][2];
  gather8(v, t, c, n);
  const float wz[2] = {t.z.w0, t.z.w1}, wy[2] = {t.y.w0, t.y.w1}, wx[2] = {t.x.w0, t.x.w1};
  float lab[8], w[8];
  for (int q = 0; q < 8; ++q) {
    const int a = q & 1, b = (q >> 1) & 1, cz = q >> 2;
    lab[q] = n[cz][b][a];
    w[q] = (wz[cz] * wy[b]) * wx[a];
  }
  float best = lab[0], best_w = -1.f;
  for (int q = 0; q < 8; ++q) {
    bool seen = false;
    for (int r = 0; r < q; ++r) seen = seen || lab[r] == lab[q];
    if (seen) continue;
    float s = 0.f;
    for (int r = q; r < 8; ++r)
      if (lab[r] == lab[q]) s += w[r];
    if (s > best_w || (s == best_w && lab[q] < best)) {
      best = lab[q];
      best_w = s;
    }
  }
  return best;
}

/// Whether continuous index p lies in ITK's buffer, [-0.5, size - 0.5) on every axis
/// (ImageFunction::IsInsideBuffer): where ITK's resampler interpolates rather than writing its
/// default value, and where a displacement field transform moves a point. False for NaN.
GIGAREG_HDI bool inside_itk_buffer(Vec3f p, Index3 size) {
  return p.x >= -0.5f && p.x < float(size.x) - 0.5f && p.y >= -0.5f && p.y < float(size.y) - 0.5f &&
         p.z >= -0.5f && p.z < float(size.z) - 0.5f;
}

/// ITK's mirror rule for a B-spline tap index outside [0, n): reflected about the end samples
/// (period 2n - 2; a single-sample axis reads sample 0).
GIGAREG_HDI index_t mirror_index(index_t i, index_t n) {
  if (n == 1) return 0;
  const index_t period = 2 * n - 2;
  if (i < 0) i = -i - period * (-i / period);
  if (i >= n) {
    i = i % period;
    if (i >= n) i = period - i;
  }
  return i;
}

/// The cubic B-spline weights of the 4 taps floor(p) - 1 .. floor(p) + 2 along one axis.
GIGAREG_HDI void bspline3_weights(double p, index_t& first, double w[4]) {
  const double f = floor(p);
  first = index_t(f) - 1;
  const double t = p - f;  // in [0, 1)
  const double s = 1.0 - t;
  w[0] = s * s * s / 6.0;
  w[1] = (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0;
  w[2] = (4.0 - 6.0 * s * s + 3.0 * s * s * s) / 6.0;
  w[3] = t * t * t / 6.0;
}

/// Cubic B-spline value at continuous index p from the coefficients `c` (a view of the whole
/// grid: the taps reach 2 voxels beyond p, mirrored at the edges), in double as ITK.
template <class T>
GIGAREG_HDI float sample_bspline3(const VolumeView<T>& c, Vec3f p) {
  if (!(p.x == p.x && p.y == p.y && p.z == p.z)) return 0.f;  // NaN
  index_t first[3];
  double w[3][4];
  const Index3 n = c.global_size;
  for (int a = 0; a < 3; ++a) bspline3_weights(double(p[a]), first[a], w[a]);
  double value = 0.0;
  for (int tz = 0; tz < 4; ++tz) {
    const index_t k = mirror_index(first[2] + tz, n.z);
    double plane = 0.0;
    for (int ty = 0; ty < 4; ++ty) {
      const index_t j = mirror_index(first[1] + ty, n.y);
      double row = 0.0;
      for (int tx = 0; tx < 4; ++tx)
        row += w[0][tx] * double(load_ro(&c.at(mirror_index(first[0] + tx, n.x), j, k)));
      plane += w[1][ty] * row;
    }
    value += w[2][tz] * plane;
  }
  return float(value);
}

/// Dispatch on the interpolation mode (the kernels instantiate one mode each). BSpline reads
/// coefficients, not the image, and ignores the boundary (the caller applies ITK's buffer rule).
template <Interpolation I, class T>
GIGAREG_HDI float sample(const VolumeView<T>& v, Vec3f p, Boundary boundary) {
  if constexpr (I == Interpolation::Linear) return sample_linear(v, p, boundary);
  else if constexpr (I == Interpolation::Nearest) return sample_nearest(v, p, boundary);
  else if constexpr (I == Interpolation::Label) return sample_label(v, p, boundary);
  else return sample_bspline3(v, p);
}

}  // namespace gigareg

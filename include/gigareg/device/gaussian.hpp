#pragma once
// Per-voxel math of Gaussian smoothing and of pyramid resampling, shared by the CPU reference
// (src/cpu/smooth.cpp, src/cpu/pyramid.cpp) and the CUDA kernels (kernels/smooth.cu,
// kernels/pyramid.cu). Both backends call these same functions with the same operand order, and
// the arithmetic goes through rn_mul / rn_add, which forbid the CUDA compiler from contracting a
// multiply and an add into an FMA: on a host without FMA contraction (gigareg builds with
// -std=c++17, where GCC does not contract) the two backends then round identically.

#include "gigareg/device/rounding.hpp"
#include "gigareg/device/view.hpp"

namespace gigareg {

/// Largest kernel radius the smoothing ops accept (both backends, so that they agree on what is
/// valid): the CUDA passes keep (64 + 2 * radius) x 32 floats of a tile in shared memory.
constexpr int kMaxGaussianRadius = 128;

/// A sampled, normalised 1-D Gaussian: w[k] for k = 0..radius, the kernel being symmetric
/// (w[-k] = w[k]). Trivially copyable: it travels to kernels by value as a launch parameter.
struct GaussianTaps {
  int radius = 0;
  float w[kMaxGaussianRadius + 1] = {1.0f};
};

/// One output of a 1-D pass: sum_k w[|k|] * center[k * stride] for k = -radius..radius, where
/// `center` points at the output voxel's own input sample in a buffer whose out-of-grid samples
/// were already replaced by the clamped (replicated) edge sample, and w holds radius + 1 taps.
/// Fixed order: the centre tap first, then the symmetric pairs k = 1..radius, each pair added
/// before it is weighted. float accumulation: the error is a few ulps times sqrt(radius)
/// (measured against double in the unit tests).
/// `stride` is the distance between samples in the buffer (a line or a shared-memory tile, small).
GIGAREG_HDI float gaussian_tap_sum(const float* w, int radius, const float* center, int stride) {
  using detail::rn_add;
  using detail::rn_mul;
  float acc = rn_mul(w[0], center[0]);
  const float* lo = center;
  const float* hi = center;
#if defined(__CUDA_ARCH__)
#pragma unroll 4
#endif
  for (int k = 1; k <= radius; ++k) {
    lo -= stride;
    hi += stride;
    acc = rn_add(acc, rn_mul(w[k], rn_add(*lo, *hi)));
  }
  return acc;
}

GIGAREG_HDI index_t clamp_index(index_t i, index_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

/// One output of the transpose of a whole-line pass (gaussian_tap_sum with the index clamped to
/// the line of n samples), as a gather, so that each output is computed by one thread on either
/// backend: out[j] = sum over taps k of w[|k|] y[j - k] for the samples j - k inside the line,
/// plus, at each end, every tap that the forward pass clamped onto that end: out[0] gets
/// y[i] * sum_{k = i+1..r} w[k] for i < r, and out[n - 1] the mirror image (both when n is 1).
/// `line` is sample 0 of the line, `stride` the distance between its samples. Fixed order (the
/// centre, the pairs k = 1..r, then the low end's tails from i = r - 1 down to 0, then the high
/// end's), rn_ ops: the CPU reference and the CUDA kernel agree bitwise.
GIGAREG_HDI float gaussian_adjoint_sample(const float* w, int radius, const float* line, index_t stride, index_t j,
                                          index_t n) {
  using detail::rn_add;
  using detail::rn_mul;
  float acc = rn_mul(w[0], line[j * stride]);
  for (int k = 1; k <= radius; ++k) {
    const index_t lo = j - k, hi = j + k;
    if (lo >= 0 && hi < n)
      acc = rn_add(acc, rn_mul(w[k], rn_add(line[lo * stride], line[hi * stride])));
    else if (lo >= 0)
      acc = rn_add(acc, rn_mul(w[k], line[lo * stride]));
    else if (hi < n)
      acc = rn_add(acc, rn_mul(w[k], line[hi * stride]));
  }
  if (j == 0 || j == n - 1) {
    float tail = 0.f;  // sum_{k = i+1..r} w[k], grown as i goes down
    for (int i = radius - 1; i >= 0; --i) {
      tail = rn_add(tail, w[i + 1]);
      if (i >= n) continue;
      if (j == 0) acc = rn_add(acc, rn_mul(tail, line[i * stride]));
      if (j == n - 1) acc = rn_add(acc, rn_mul(tail, line[(n - 1 - i) * stride]));
    }
  }
  return acc;
}

/// a + t (b - a): exact for a == b, so resampling a constant returns the constant bitwise.
GIGAREG_HDI float lerp_rn(float a, float b, float t) {
  return detail::rn_add(a, detail::rn_mul(t, detail::rn_sub(b, a)));
}

/// Where a continuous index along one axis falls between two grid samples, with the boundary
/// rule of the pyramid: the position is clamped to [0, n - 1] (replicate the edge voxel), so a
/// level voxel whose centre lies in the outer half voxel of the grid takes the edge value.
struct LinearTap {
  index_t i0, i1;
  float t;
};
GIGAREG_HDI LinearTap linear_tap(double x, index_t n) {
  const double xc = x < 0.0 ? 0.0 : (x > double(n - 1) ? double(n - 1) : x);
  index_t i0 = index_t(xc);  // xc >= 0: truncation is floor
  if (i0 > n - 1) i0 = n - 1;
  const index_t i1 = i0 + 1 < n ? i0 + 1 : n - 1;
  return {i0, i1, float(xc - double(i0))};
}

/// Where the 8 samples of a trilinear interpolation lie in a view's memory and their weights:
/// computed once per position and applied to every component plane.
struct TrilinearStencil {
  index_t ox[2], oy[2], oz[2];  // offsets of the two samples along each axis (sum = element)
  float tx, ty, tz;
};

/// The stencil of v at the continuous global index p (ITK index space: integer values are voxel
/// centres), with the clamped boundary rule of linear_tap. The samples read lie in
/// [floor(p) clamped, floor(p) + 1 clamped] along each axis and must be inside v's box.
GIGAREG_HDI TrilinearStencil trilinear_stencil(const VolumeView<const float>& v, Vec3d p) {
  const LinearTap tx = linear_tap(p.x, v.global_size.x);
  const LinearTap ty = linear_tap(p.y, v.global_size.y);
  const LinearTap tz = linear_tap(p.z, v.global_size.z);
  TrilinearStencil s;
  s.ox[0] = (tx.i0 - v.box_lo.x) * v.stride.x;
  s.ox[1] = (tx.i1 - v.box_lo.x) * v.stride.x;
  s.oy[0] = (ty.i0 - v.box_lo.y) * v.stride.y;
  s.oy[1] = (ty.i1 - v.box_lo.y) * v.stride.y;
  s.oz[0] = (tz.i0 - v.box_lo.z) * v.stride.z;
  s.oz[1] = (tz.i1 - v.box_lo.z) * v.stride.z;
  s.tx = tx.t;
  s.ty = ty.t;
  s.tz = tz.t;
  return s;
}

/// The interpolated value of one component plane (`plane` = view data + c * component_stride).
/// Order: x first, then y, then z, each by lerp_rn.
GIGAREG_HDI float trilinear_apply(const TrilinearStencil& s, const float* plane) {
  auto at = [&](int a, int b, int c) { return plane[s.ox[a] + s.oy[b] + s.oz[c]]; };
  const float c00 = lerp_rn(at(0, 0, 0), at(1, 0, 0), s.tx);
  const float c10 = lerp_rn(at(0, 1, 0), at(1, 1, 0), s.tx);
  const float c01 = lerp_rn(at(0, 0, 1), at(1, 0, 1), s.tx);
  const float c11 = lerp_rn(at(0, 1, 1), at(1, 1, 1), s.tx);
  return lerp_rn(lerp_rn(c00, c10, s.ty), lerp_rn(c01, c11, s.ty), s.tz);
}

/// Trilinear sample of component c of `v` at the continuous global index p (see above).
GIGAREG_HDI float sample_trilinear_clamped(const VolumeView<const float>& v, Vec3d p, int c) {
  return trilinear_apply(trilinear_stencil(v, p), v.data + c * v.component_stride);
}

/// Continuous source index of a destination voxel: the affine map (destination index ->
/// physical -> source index) evaluated in double with a fixed operation order (no FMA on the
/// device either), so both backends land on the same source position bitwise.
GIGAREG_HDI Vec3d map_index(const Affined& m, index_t i, index_t j, index_t k) {
  using detail::rn_add;
  using detail::rn_mul;
  const double x = double(i), y = double(j), z = double(k);
  Vec3d r;
  for (int a = 0; a < 3; ++a)
    r[a] = rn_add(rn_add(rn_add(rn_mul(m.matrix(a, 0), x), rn_mul(m.matrix(a, 1), y)),
                         rn_mul(m.matrix(a, 2), z)),
                  m.offset[a]);
  return r;
}

}  // namespace gigareg

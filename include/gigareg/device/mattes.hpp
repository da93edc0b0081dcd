#pragma once
// Per-voxel math of Mattes mutual information, shared by the CPU reference (src/cpu/mattes.cpp)
// and the CUDA kernels (kernels/mattes.cu): intensity -> continuous bin coordinate, Parzen
// window weights and their derivatives, fixed-point histogram contributions, the per-bin
// gradient table entry and the per-voxel gradient.
//
// Both backends call these functions with the same operands; the float arithmetic goes through
// mi_mul / mi_add / mi_sub, which the CUDA compiler may not contract into FMAs (the host build
// does not contract either: no FMA in the x86-64 baseline and -std=c++17), so a voxel's
// fixed-point contributions are bitwise identical on both backends and so is the histogram.
//
// Binning (n bins, 5 <= n <= kMattesMaxBins):
//  - cubic B-spline window (always for the moving image; optional for the fixed one): intensity
//    v in [lo, hi] maps to u = (v - lo) (n - 3) / (hi - lo) + 1 in [1, n - 2]; the window puts
//    weight beta3(u - j) on bins j = j0..j0+3, j0 = clamp(floor(u), 1, n - 3) - 1, so every tap
//    of the support lies inside [0, n). Intensities outside [lo, hi] are clamped to the range
//    ends, where the derivative is taken as 0.
//  - zero-order (box) window (the fixed image by default, as ITK's MattesMutualInformation):
//    bin floor((v - lo) n / (hi - lo)) clamped to [0, n - 1], weight 1.
// hi == lo is accepted: every voxel falls in one bin and the gradient is 0.

#include <cstdint>

#include "gigareg/device/macros.hpp"
#include "gigareg/device/rounding.hpp"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif

namespace gigareg {

inline constexpr int kMattesMinBins = 5;
inline constexpr int kMattesMaxBins = 128;
/// Histogram weights are stored in fixed point: round(weight * 2^26) per contribution (a voxel's
/// contributions sum to about 2^26). int64 totals then hold up to 2^37 voxels.
inline constexpr int kMattesFixedPointBits = 26;
inline constexpr float kMattesFixedPointScale = 67108864.0f;  // 2^26
inline constexpr double kMattesFixedPointInvScale = 1.0 / 67108864.0;

namespace mi_detail {
using detail::rn_add;
using detail::rn_mul;
using detail::rn_sub;
GIGAREG_HDI float mi_floor(float a) {
#if defined(__CUDA_ARCH__)
  return floorf(a);
#else
  return std::floor(a);
#endif
}
/// Round to nearest, ties to even, as an integer (the value is at most 2^26).
GIGAREG_HDI std::uint32_t mi_to_fixed(float weight) {
  const float scaled = weight * kMattesFixedPointScale;  // exact: a power of two
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint32_t>(__float2uint_rn(scaled));
#else
  return static_cast<std::uint32_t>(std::nearbyint(scaled));
#endif
}
}  // namespace mi_detail

/// Maps one image's intensities to bin coordinates (host-computed, identical on both backends).
struct MattesAxis {
  float lo = 0.0f;
  float scale = 0.0f;  // cubic: (n - 3) / (hi - lo); box: n / (hi - lo); 0 when hi == lo
  int bins = 32;
  bool cubic = true;
};

/// The taps of one intensity: `count` bins first..first+count-1 with weights w and derivatives
/// dw = d w / d intensity (count is 4 for the cubic window, 1 for the box window).
struct ParzenTaps {
  int first;
  int count;
  float w[4];
  float dw[4];
};

GIGAREG_HDI ParzenTaps parzen_taps(float v, const MattesAxis& ax) {
  using namespace mi_detail;
  ParzenTaps t;
  if (!ax.cubic) {
    const float s = rn_mul(rn_sub(v, ax.lo), ax.scale);
    int bin = 0;
    if (s >= 1.0f) bin = s < float(ax.bins) ? int(mi_floor(s)) : ax.bins - 1;  // NaN -> 0
    t.first = bin > ax.bins - 1 ? ax.bins - 1 : bin;
    t.count = 1;
    t.w[0] = 1.0f;
    t.dw[0] = 0.0f;
    t.w[1] = t.w[2] = t.w[3] = 0.0f;
    t.dw[1] = t.dw[2] = t.dw[3] = 0.0f;
    return t;
  }
  const float upper = float(ax.bins - 2);
  float u = rn_add(rn_mul(rn_sub(v, ax.lo), ax.scale), 1.0f);
  float slope = ax.scale;
  if (!(u >= 1.0f)) {  // below the range (or NaN): clamp, no derivative
    u = 1.0f;
    slope = 0.0f;
  } else if (u > upper) {
    u = upper;
    slope = 0.0f;
  }
  int j = int(mi_floor(u));
  if (j > ax.bins - 3) j = ax.bins - 3;
  const float s = rn_sub(u, float(j));  // in [0, 1], exact
  const float r = rn_sub(1.0f, s);
  const float s2 = rn_mul(s, s);
  const float s3 = rn_mul(s2, s);
  const float sixth = 1.0f / 6.0f;
  t.first = j - 1;
  t.count = 4;
  // Uniform cubic B-spline on the taps j-1, j, j+1, j+2 at distances 1+s, s, 1-s, 2-s.
  t.w[0] = rn_mul(rn_mul(rn_mul(r, r), r), sixth);
  t.w[1] = rn_mul(rn_add(rn_sub(rn_mul(3.0f, s3), rn_mul(6.0f, s2)), 4.0f), sixth);
  t.w[2] = rn_mul(rn_add(rn_add(rn_add(rn_mul(-3.0f, s3), rn_mul(3.0f, s2)), rn_mul(3.0f, s)), 1.0f),
                  sixth);
  t.w[3] = rn_mul(s3, sixth);
  // d/ds, times du/dv.
  t.dw[0] = rn_mul(rn_mul(-0.5f, rn_mul(r, r)), slope);
  t.dw[1] = rn_mul(rn_sub(rn_mul(1.5f, s2), rn_mul(2.0f, s)), slope);
  t.dw[2] = rn_mul(rn_add(rn_add(rn_mul(-1.5f, s2), s), 0.5f), slope);
  t.dw[3] = rn_mul(rn_mul(0.5f, s2), slope);
  return t;
}

/// A voxel's joint-histogram contributions: fixed bins i0..i0+ni-1 times moving bins j0..j0+3,
/// weight[a * 4 + b] in fixed point for the pair (i0 + a, j0 + b).
struct MattesContribution {
  int i0;
  int ni;
  int j0;
  std::uint32_t weight[16];
};

GIGAREG_HDI MattesContribution mattes_contribution(float f, float m, const MattesAxis& fixed_axis,
                                                   const MattesAxis& moving_axis) {
  const ParzenTaps tf = parzen_taps(f, fixed_axis);
  const ParzenTaps tm = parzen_taps(m, moving_axis);
  MattesContribution c;
  c.i0 = tf.first;
  c.ni = tf.count;
  c.j0 = tm.first;
  for (int a = 0; a < 4; ++a)
    for (int b = 0; b < 4; ++b)
      c.weight[a * 4 + b] =
          a < tf.count ? mi_detail::mi_to_fixed(mi_detail::rn_mul(tf.w[a], tm.w[b])) : 0u;
  return c;
}

/// Gradient-table entry for a joint bin: log(p_ij / (p_i p_j)) from fixed-point counts h, the
/// marginals hf (fixed) and hm (moving) and the total; 0 for an empty bin. Double precision.
GIGAREG_HDI double mattes_pointwise_mi(std::int64_t h, std::int64_t hf, std::int64_t hm,
                                       std::int64_t total) {
  if (h <= 0) return 0.0;
  const double ratio = (double(h) / double(hf)) * (double(total) / double(hm));
#if defined(__CUDA_ARCH__)
  return log(ratio);
#else
  return std::log(ratio);
#endif
}

/// d S / d W at one voxel, S = -MI * (total weight): -sum_ij G(i, j) w_i(F) d w_j(W) / dW, with
/// G the gradient table (row-major [fixed][moving], n x n floats). Fixed summation order.
GIGAREG_HDI float mattes_voxel_gradient(float f, float m, const MattesAxis& fixed_axis,
                                        const MattesAxis& moving_axis, const float* table) {
  using namespace mi_detail;
  const ParzenTaps tf = parzen_taps(f, fixed_axis);
  const ParzenTaps tm = parzen_taps(m, moving_axis);
  const int n = moving_axis.bins;
  float g = 0.0f;
  for (int a = 0; a < tf.count; ++a) {
    const float* row = table + (tf.first + a) * n + tm.first;
    float acc = rn_mul(row[0], tm.dw[0]);
    acc = rn_add(acc, rn_mul(row[1], tm.dw[1]));
    acc = rn_add(acc, rn_mul(row[2], tm.dw[2]));
    acc = rn_add(acc, rn_mul(row[3], tm.dw[3]));
    g = rn_add(g, rn_mul(tf.w[a], acc));
  }
  return -g;
}

}  // namespace gigareg

#pragma once
// Per-voxel math of the local normalised cross-correlation (LNCC), shared by the CPU reference
// (src/cpu/lncc.cpp, T = double) and the CUDA kernel (kernels/lncc.cu, T = float).
//
// Window: weights k(x, y) = w[dx] w[dy] w[dz] for |d| <= H (box: w = 1, H = r; Gaussian:
// w[d] = exp(-d^2 / (2 sigma^2)), H = ceil(truncation * sigma)). The window is clipped at the
// GLOBAL grid edge: only in-grid voxels are summed and n(x) = sum of their weights, which is
// separable: n = n_x(i) n_y(j) n_z(k) with n_a(i) = sum of w[d] over 0 <= i + d < size_a.
//
// At a window centre x, with weighted window sums Sf, Sw, Sff, Sww, Sfw and n:
//   mf = Sf / n, mw = Sw / n, cross = Sfw / n - mf mw,
//   vf = max(Sff / n - mf^2, 0), vw = max(Sww / n - mw^2, 0)      (means, not sums)
//   cc = cross^2 / (vf vw + eps)                                    (eps: (intensity)^4 units)
//   A window whose vf is below min_vf or whose vw is below min_vw counts as flat: cc = 0 and
//   a = b = c = 0 (no correlation, no gradient; NaN where the window holds a NaN or inf). ANTs
//   zeroes windows whose variance sums are about 0; these floors are a level. They exist
//   for the float backend: its window variances carry an absolute rounding noise of about 1e-7
//   times the squared intensities of the tile, so in a nearly flat window next to bright tissue
//   (a brain's edge over background) cross and the variance are noise, and cc = cross^2 / (vf vw +
//   eps) is anything up to 1. A floor well above that noise, e.g. (0.01 x intensity range)^2,
//   makes both backends agree; 0 turns it off.
// The loss term of a centre is -cc. Its derivative w.r.t. the warped image at any voxel y is
//   d(-cc(x)) / dW(y) = k(x, y) (a(x) F(y) + b(x) W(y) + c(x))
// with a = -2 cross / (D n), b = 2 cc vf / (D n) (0 where vw was clamped), c = -a mf - b mw and
// D = vf vw + eps: the three adjoint coefficients of the exact gradient, which the ops box-filter
// a second time (the weights are symmetric, so the adjoint filter is the forward filter).

#include "gigareg/device/math.hpp"

namespace gigareg {

/// Largest window support radius H either backend accepts (the CUDA kernel keeps tiles grown by
/// 2H in shared memory).
inline constexpr int kLnccMaxRadius = 8;

/// The 1-D window weights w[H + d] for d = -H..H, as both backends use them (float).
struct LnccTaps {
  int radius = 0;
  float w[2 * kLnccMaxRadius + 1] = {1.0f};
};

/// What the backends need besides the views: taps, eps, and which gradient.
struct LnccConfig {
  LnccTaps taps;
  float eps = 1e-5f;
  float min_vf = 0.0f, min_vw = 0.0f;  // variance floors (intensity^2): below them cc = 0
  bool exact_gradient = true;  // false: ANTs' approximation (adjoint coefficients held constant)
};

/// 1 / x: exact rounding on the host, the hardware reciprocal (about 1 ulp) on the device.
GIGAREG_HDI float lncc_recip(float x) {
#if defined(__CUDA_ARCH__)
  return __fdividef(1.0f, x);
#else
  return 1.0f / x;
#endif
}
GIGAREG_HDI double lncc_recip(double x) { return 1.0 / x; }

template <class T>
struct LnccLocal {
  T cc;       // local squared correlation coefficient at the centre
  T a, b, c;  // adjoint coefficients of the loss term -cc (see above)
};

/// The reciprocal lncc_local uses by default (lncc_recip).
struct LnccRecip {
  template <class T>
  GIGAREG_HDI T operator()(T x) const { return lncc_recip(x); }
};

/// A window's means, clamped variances and cross term from its sums and 1 / n, with the
/// variance floors applied: a flat window (a variance below its floor; never with floors of 0)
/// has cross = 0 times itself (so a NaN or inf in the window, which clamps the variances to 0,
/// still makes cc NaN and the loss reports it) and no b coefficient (vw_positive false).
template <class T>
struct LnccMoments {
  T mf, mw, vf, vw, cross;
  bool vw_positive;  // vw > 0 and not flat: b may be non-zero
};
template <class T>
GIGAREG_HDI LnccMoments<T> lncc_moments(T inv_n, T sf, T sw, T sff, T sww, T sfw, T min_vf,
                                        T min_vw) {
  LnccMoments<T> m;
  m.mf = sf * inv_n;
  m.mw = sw * inv_n;
  const T vf = sff * inv_n - m.mf * m.mf;
  const T vw = sww * inv_n - m.mw * m.mw;
  m.vf = vf > T(0) ? vf : T(0);
  m.vw = vw > T(0) ? vw : T(0);
  const T raw_cross = sfw * inv_n - m.mf * m.mw;
  const bool flat = m.vf < min_vf || m.vw < min_vw;
  m.cross = flat ? raw_cross * T(0) : raw_cross;
  m.vw_positive = m.vw > T(0) && !flat;
  return m;
}

/// cc and the adjoint coefficients of -cc at one centre from its window sums (n > 0). `recip`:
/// a kernel whose arguments are known to be normal floats may pass a cheaper reciprocal that
/// gives the same results for them.
template <class T, class Recip = LnccRecip>
GIGAREG_HDI LnccLocal<T> lncc_local(T n, T sf, T sw, T sff, T sww, T sfw, T eps,
                                    T min_vf = T(0), T min_vw = T(0), Recip recip = {}) {
  const T inv_n = recip(n);
  const LnccMoments<T> m = lncc_moments(inv_n, sf, sw, sff, sww, sfw, min_vf, min_vw);
  const T mf = m.mf, mw = m.mw, vf = m.vf, vw = m.vw, cross = m.cross;
  const bool vw_positive = m.vw_positive;
  const T inv_d = recip(vf * vw + eps);
  LnccLocal<T> r;
  r.cc = cross * cross * inv_d;
  // d cc / dW(y) = (k / n) [ (2 cross / D) (F(y) - mf) - (2 cc vf / D) (W(y) - mw) ]
  const T alpha = T(2) * cross * inv_d * inv_n;
  const T beta = vw_positive ? -(T(2) * r.cc * vf * inv_d * inv_n) : T(0);
  r.a = -alpha;
  r.b = -beta;
  r.c = alpha * mf + beta * mw;
  return r;
}

/// n_a(i): the sum of the weights w[H + d] over in-grid positions 0 <= i + d < size.
template <class T>
GIGAREG_HDI T lncc_axis_weight(const float* w, int radius, index_t i, index_t size) {
  T s = T(0);
  for (int d = -radius; d <= radius; ++d)
    if (i + d >= 0 && i + d < size) s += T(w[radius + d]);
  return s;
}

}  // namespace gigareg

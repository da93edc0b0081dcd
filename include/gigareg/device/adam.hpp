#pragma once
// Per-element math of the Adam optimiser and of the max-norm of a vector field, shared by the
// CPU reference (src/cpu/optim.cpp) and the CUDA kernels (kernels/optim.cu). Arithmetic goes
// through round-to-nearest intrinsics on the device (no FMA contraction, IEEE division and
// square root), so both backends compute the same float operations in the same order.

#include <cstdint>
#include <cstring>

#include "gigareg/device/bfloat16.hpp"
#include "gigareg/device/bits.hpp"
#include "gigareg/device/rounding.hpp"
#include "gigareg/device/view.hpp"

#if !defined(__CUDA_ARCH__)
#include <cmath>
#endif

namespace gigareg {

/// The per-step constants of Adam, rounded to float once on the host (adam_coefficients in
/// gigareg/ops/optim.hpp computes them in double from AdamParams):
///   m <- beta1 m + (1 - beta1) g
///   v <- beta2 v + (1 - beta2) g^2
///   step = -(lr / (1 - beta1^t)) m / (sqrt(v / (1 - beta2^t)) + eps)
struct AdamCoefficients {
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float step_size;  // lr / (1 - beta1^t): the first-moment bias correction folded in
  float inv_bias2;  // 1 / (1 - beta2^t)
  float eps;
};

/// Updates the moments of one element in place.
GIGAREG_HDI void adam_moments_update(const AdamCoefficients& c, float g, float& m, float& v) {
  using detail::rn_add;
  using detail::rn_mul;
  m = rn_add(rn_mul(c.beta1, m), rn_mul(c.one_minus_beta1, g));
  v = rn_add(rn_mul(c.beta2, v), rn_mul(c.one_minus_beta2, rn_mul(g, g)));
}

/// The bias-corrected descent step of one element from its updated moments (u += step descends).
GIGAREG_HDI float adam_step_value(const AdamCoefficients& c, float m, float v) {
  using detail::rn_add;
  using detail::rn_mul;
  const float denom = rn_add(detail::rn_sqrt(rn_mul(v, c.inv_bias2)), c.eps);
  return -detail::rn_div(rn_mul(c.step_size, m), denom);
}

/// The fused element: moments updated in place, the step returned, times s when `scaled`.
GIGAREG_HDI float adam_update_element(const AdamCoefficients& c, float g, float& m, float& v,
                                      bool scaled, float s) {
  adam_moments_update(c, g, m, v);
  const float step = adam_step_value(c, m, v);
  return scaled ? detail::rn_mul(step, s) : step;
}

/// Moments are stored as float or as bfloat16 (half the memory); the math is float either way.
/// A bfloat16 moment is widened exactly on load and rounded to nearest (ties to even) on store.
GIGAREG_HDI float load_moment(float m) { return m; }
GIGAREG_HDI float load_moment(bfloat16 m) { return to_float(m); }
GIGAREG_HDI void store_moment(float& slot, float m) { slot = m; }
GIGAREG_HDI void store_moment(bfloat16& slot, float m) { slot = to_bfloat16(m); }

/// Euclidean norm of one vector, in double: the squares of floats are exact in double and the
/// two sums round the same with or without FMA, so the norm is bitwise the same on both backends.
GIGAREG_HDI double vector_norm(float x, float y, float z) {
  using detail::rn_add;
  using detail::rn_mul;
  const double dx = x, dy = y, dz = z;
  return detail::rn_sqrt(rn_add(rn_add(rn_mul(dx, dx), rn_mul(dy, dy)), rn_mul(dz, dz)));
}

/// Max of non-negative doubles as the unsigned max of their bit patterns: order-independent,
/// the same on the host and in a device atomicMax, and a NaN (all exponent bits set) wins.
GIGAREG_HDI double max_norm_combine(double a, double b) {
  return double_bits(a) >= double_bits(b) ? a : b;
}

}  // namespace gigareg

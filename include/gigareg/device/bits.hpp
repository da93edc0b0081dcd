#pragma once
// The bit patterns of floats and doubles and back, the same on the host (memcpy) and on the
// device (the reinterpret intrinsics): for order-independent maxima on bit patterns (adam.hpp) and
// for rounding to bfloat16 with integer operations (bfloat16.hpp).

#include <cstdint>
#include <cstring>

#include "gigareg/device/macros.hpp"

namespace gigareg {

GIGAREG_HDI std::uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
GIGAREG_HDI float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}
GIGAREG_HDI std::uint64_t double_bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<std::uint64_t>(__double_as_longlong(d));
#else
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}
GIGAREG_HDI double bits_double(std::uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
#endif
}

}  // namespace gigareg

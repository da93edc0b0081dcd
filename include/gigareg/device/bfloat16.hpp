#pragma once
// bfloat16 storage: the upper 16 bits of an IEEE float (8 exponent bits, 7 mantissa bits), the
// float's range with 2-3 significant decimal digits. gigareg stores the Adam moments of a
// displacement field in it (12 instead of 24 bytes per voxel); all arithmetic stays in float.
//
// The conversion is written out with integer operations, identical on the host and the device,
// so both backends round every value to the same bits: round to nearest, ties to even; a NaN
// stays a (quiet) NaN; values beyond the largest finite bfloat16 round to infinity, as IEEE
// rounding does. No CUDA header type (__nv_bfloat16) is used, so host-only code can hold these.

#include <cstdint>

#include "gigareg/device/bits.hpp"
#include "gigareg/device/macros.hpp"

namespace gigareg {

/// A bfloat16 value as its bits. Zero bits are +0, so memset(0) gives zeros.
struct bfloat16 {
  std::uint16_t bits;
};

/// x rounded to the nearest bfloat16 (ties to even).
GIGAREG_HDI bfloat16 to_bfloat16(float x) {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep the sign and the top payload bits, quiet
    return bfloat16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
  // Adding 0x7fff plus the lowest kept bit rounds to nearest with ties to even; a carry into the
  // exponent is the correct rounding up (to infinity past the largest finite value).
  const std::uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return bfloat16{static_cast<std::uint16_t>(rounded >> 16)};
}

/// The float with the same value (exact).
GIGAREG_HDI float to_float(bfloat16 b) { return bits_float(std::uint32_t(b.bits) << 16); }

}  // namespace gigareg

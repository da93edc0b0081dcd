#pragma once
// Pixel types and value conversions shared by the ITK and the direct NIfTI paths (not installed).

#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include "gigareg/error.hpp"
#include "gigareg/io.hpp"

namespace gigareg::io_detail {

/// Calls f(T{}) with the C++ type of `type`.
template <class F>
decltype(auto) dispatch(PixelType type, F&& f) {
  switch (type) {
    case PixelType::UInt8: return f(std::uint8_t{});
    case PixelType::Int8: return f(std::int8_t{});
    case PixelType::UInt16: return f(std::uint16_t{});
    case PixelType::Int16: return f(std::int16_t{});
    case PixelType::UInt32: return f(std::uint32_t{});
    case PixelType::Int32: return f(std::int32_t{});
    case PixelType::UInt64: return f(std::uint64_t{});
    case PixelType::Int64: return f(std::int64_t{});
    case PixelType::Float32: return f(float{});
    case PixelType::Float64: return f(double{});
  }
  throw_error(ErrorKind::Internal, "dispatch", "unknown pixel type");
}

/// Calls f(T{}) with the C++ type of a NIfTI-1 datatype code (one of the ten real types).
template <class F>
void dispatch_datatype(std::int16_t datatype, F&& f) {
  switch (datatype) {
    case 2: return void(f(std::uint8_t{}));
    case 4: return void(f(std::int16_t{}));
    case 8: return void(f(std::int32_t{}));
    case 16: return void(f(float{}));
    case 64: return void(f(double{}));
    case 256: return void(f(std::int8_t{}));
    case 512: return void(f(std::uint16_t{}));
    case 768: return void(f(std::uint32_t{}));
    case 1024: return void(f(std::int64_t{}));
    case 1280: return void(f(std::uint64_t{}));
    default: throw_error(ErrorKind::Internal, "dispatch_datatype", "not a real NIfTI datatype");
  }
}

template <class Int>
PixelType integer_type() {
  static_assert(std::is_integral_v<Int>);
  switch (sizeof(Int)) {
    case 1: return std::is_signed_v<Int> ? PixelType::Int8 : PixelType::UInt8;
    case 2: return std::is_signed_v<Int> ? PixelType::Int16 : PixelType::UInt16;
    case 4: return std::is_signed_v<Int> ? PixelType::Int32 : PixelType::UInt32;
    default: return std::is_signed_v<Int> ? PixelType::Int64 : PixelType::UInt64;
  }
}

/// "(x, y, z)" of voxel i of the grid g.
inline std::string format_index(const Geometry& g, index_t i) {
  std::ostringstream s;
  s << "(" << i % g.size.x << ", " << (i / g.size.x) % g.size.y << ", " << i / (g.size.x * g.size.y)
    << ")";
  return s.str();
}

/// Whether float32 holds the integer v exactly as gigareg requires of label values (|v| <= 2^24).
template <class T>
bool fits_float_exactly(T v) {
  if constexpr (std::is_integral_v<T> && std::numeric_limits<T>::digits > 24) {
    constexpr T limit = T(1) << 24;
    if (v > limit) return false;
    if constexpr (std::is_signed_v<T>) return v >= -limit;
  }
  return true;
}

/// The error for an integer voxel that float32 cannot hold exactly (see fits_float_exactly).
template <class T>
[[noreturn]] void throw_inexact_integer(const std::string& path, const Geometry& g, index_t voxel, T v) {
  throw_error(ErrorKind::InvalidInput, path,
              "voxel " + format_index(g, voxel) + " holds the integer " + std::to_string(v) +
                  ", which float32 cannot represent exactly (|v| > 2^24); gigareg keeps voxels as "
                  "float32 and does not round label values");
}

/// One float voxel -> an integer type, as IntegerConversion says (throws for Exact misfits).
template <class T>
T to_integer(float v, IntegerConversion conversion, const Geometry& g, index_t i,
             const std::string& path) {
  constexpr int digits = std::numeric_limits<T>::digits;  // value bits (without the sign)
  const double hi = std::ldexp(1.0, digits);                // exclusive upper bound, exact
  const double lo = std::is_signed_v<T> ? -hi : 0.0;        // inclusive lower bound
  const double d = double(v);
  if (conversion == IntegerConversion::Exact) {
    if (!(d == std::trunc(d) && d >= lo && d < hi)) {
      std::ostringstream s;
      s << "voxel " << format_index(g, i) << " holds " << v << ", which is not an integer in the "
        << "range of " << to_string(integer_type<T>())
        << "; write it as float32 or with IntegerConversion::RoundAndClamp";
      throw_error(ErrorKind::InvalidArgument, path, s.str());
    }
    return static_cast<T>(d);
  }
  if (std::isnan(d)) return T(0);
  const double r = std::round(d);
  if (r < lo) return std::numeric_limits<T>::lowest();
  if (r >= hi) return std::numeric_limits<T>::max();
  return static_cast<T>(r);
}

/// n floats -> T on all cores (voxel indices start at first_voxel for messages); an Exact misfit
/// is reported for the lowest index, whatever the thread count.
template <class T>
void convert_from_float(const float* in, T* out, std::size_t n, IntegerConversion conversion,
                        const Geometry& g, index_t first_voxel, const std::string& path) {
  if constexpr (std::is_floating_point_v<T>) {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < std::int64_t(n); ++i) out[i] = static_cast<T>(in[i]);
  } else {
    std::int64_t bad = std::numeric_limits<std::int64_t>::max();
#pragma omp parallel for schedule(static) reduction(min : bad)
    for (std::int64_t i = 0; i < std::int64_t(n); ++i) {
      try {
        out[i] = to_integer<T>(in[i], conversion, g, first_voxel + index_t(i), path);
      } catch (...) {
        bad = std::min(bad, i);
      }
    }
    if (bad != std::numeric_limits<std::int64_t>::max())
      to_integer<T>(in[bad], conversion, g, first_voxel + index_t(bad), path);  // throws
  }
}

}  // namespace gigareg::io_detail

#pragma once
// Small fixed-size vectors and matrices usable on host and device. Host code that needs real
// linear algebra (inverses of ill-conditioned matrices, decompositions) uses Eigen in src/;
// these exist so that kernels and the CPU reference share one formula for per-voxel math.

#include <cstdint>

#include "gigareg/device/macros.hpp"

namespace gigareg {

using index_t = std::int64_t;  // every element count and index: gigavoxel sizes overflow 32 bits

template <class T>
struct Vec3T {
  T x, y, z;
  GIGAREG_HDI T operator[](int i) const { return i == 0 ? x : (i == 1 ? y : z); }
  GIGAREG_HDI T& operator[](int i) { return i == 0 ? x : (i == 1 ? y : z); }
};

template <class T>
GIGAREG_HDI Vec3T<T> operator+(Vec3T<T> a, Vec3T<T> b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
template <class T>
GIGAREG_HDI Vec3T<T> operator-(Vec3T<T> a, Vec3T<T> b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
template <class T>
GIGAREG_HDI Vec3T<T> operator*(T s, Vec3T<T> a) { return {s * a.x, s * a.y, s * a.z}; }
template <class T>
GIGAREG_HDI T dot(Vec3T<T> a, Vec3T<T> b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

/// Row-major 3x3 matrix.
template <class T>
struct Mat3T {
  T m[9];
  GIGAREG_HDI T operator()(int r, int c) const { return m[3 * r + c]; }
  GIGAREG_HDI T& operator()(int r, int c) { return m[3 * r + c]; }
  GIGAREG_HDI static Mat3T identity() { return {{1, 0, 0, 0, 1, 0, 0, 0, 1}}; }
};

template <class T>
GIGAREG_HDI Vec3T<T> operator*(const Mat3T<T>& a, Vec3T<T> v) {
  return {a.m[0] * v.x + a.m[1] * v.y + a.m[2] * v.z, a.m[3] * v.x + a.m[4] * v.y + a.m[5] * v.z,
          a.m[6] * v.x + a.m[7] * v.y + a.m[8] * v.z};
}
template <class T>
GIGAREG_HDI Mat3T<T> operator*(const Mat3T<T>& a, const Mat3T<T>& b) {
  Mat3T<T> c{};
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) {
      T s = 0;
      for (int j = 0; j < 3; ++j) s += a(r, j) * b(j, k);
      c(r, k) = s;
    }
  return c;
}
template <class T>
GIGAREG_HDI Mat3T<T> transpose(const Mat3T<T>& a) {
  return {{a.m[0], a.m[3], a.m[6], a.m[1], a.m[4], a.m[7], a.m[2], a.m[5], a.m[8]}};
}
template <class T>
GIGAREG_HDI T determinant(const Mat3T<T>& a) {
  return a.m[0] * (a.m[4] * a.m[8] - a.m[5] * a.m[7]) - a.m[1] * (a.m[3] * a.m[8] - a.m[5] * a.m[6]) +
         a.m[2] * (a.m[3] * a.m[7] - a.m[4] * a.m[6]);
}

/// y = M x + t: an affine map between two 3-D spaces (physical or index).
template <class T>
struct AffineT {
  Mat3T<T> matrix;
  Vec3T<T> offset;
  GIGAREG_HDI Vec3T<T> operator()(Vec3T<T> x) const { return matrix * x + offset; }
  GIGAREG_HDI static AffineT identity() { return {Mat3T<T>::identity(), {0, 0, 0}}; }
};

/// a o b (apply b first).
template <class T>
GIGAREG_HDI AffineT<T> compose(const AffineT<T>& a, const AffineT<T>& b) {
  return {a.matrix * b.matrix, a.matrix * b.offset + a.offset};
}

template <class To, class From>
GIGAREG_HDI Vec3T<To> cast(Vec3T<From> v) { return {To(v.x), To(v.y), To(v.z)}; }
template <class To, class From>
GIGAREG_HDI Mat3T<To> cast(const Mat3T<From>& a) {
  Mat3T<To> r{};
  for (int i = 0; i < 9; ++i) r.m[i] = To(a.m[i]);
  return r;
}
template <class To, class From>
GIGAREG_HDI AffineT<To> cast(const AffineT<From>& a) { return {cast<To>(a.matrix), cast<To>(a.offset)}; }

using Vec3d = Vec3T<double>;
using Vec3f = Vec3T<float>;
using Mat3d = Mat3T<double>;
using Mat3f = Mat3T<float>;
using Affined = AffineT<double>;
using Affinef = AffineT<float>;

struct Index3 {
  index_t x, y, z;
  GIGAREG_HDI index_t operator[](int i) const { return i == 0 ? x : (i == 1 ? y : z); }
  GIGAREG_HDI index_t& operator[](int i) { return i == 0 ? x : (i == 1 ? y : z); }
  GIGAREG_HDI bool operator==(const Index3& o) const { return x == o.x && y == o.y && z == o.z; }
  GIGAREG_HDI bool operator!=(const Index3& o) const { return !(*this == o); }
};

}  // namespace gigareg

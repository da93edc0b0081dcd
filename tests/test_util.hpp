#pragma once
// Small helpers shared by the op tests: seeded random geometries, smooth volumes and displacement
// fields, z-slabs with halos cut from a whole volume (separate allocations, so an op that reads
// outside its view reads memory that belongs to nobody), stitching, and error norms.
// Host volumes only; move data to the device with Volume::to(MemorySpace::Device).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gigareg/geometry.hpp"
#include "gigareg/memory.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::test {

/// Rotation R = Rz Ry Rx (radians).
inline Mat3d rotation(double ax, double ay, double az) {
  const double cx = std::cos(ax), sx = std::sin(ax), cy = std::cos(ay), sy = std::sin(ay),
               cz = std::cos(az), sz = std::sin(az);
  const Mat3d rx{{1, 0, 0, 0, cx, -sx, 0, sx, cx}};
  const Mat3d ry{{cy, 0, sy, 0, 1, 0, -sy, 0, cy}};
  const Mat3d rz{{cz, -sz, 0, sz, cz, 0, 0, 0, 1}};
  return rz * ry * rx;
}

inline Geometry make_geometry(Index3 size, Vec3d spacing = {1, 1, 1}, Vec3d origin = {0, 0, 0},
                              Mat3d direction = Mat3d::identity()) {
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.origin = origin;
  g.direction = direction;
  return g;
}

/// An oblique, anisotropic geometry (a typical clinical MRI header, shrunk).
inline Geometry oblique_geometry(Index3 size) {
  return make_geometry(size, {0.9, 1.1, 1.6}, {-17.5, 12.25, -8.0}, rotation(0.21, -0.13, 0.34));
}

/// Fills every component of `vol` (over its box, addressed by global index) with
///   offset + amplitude * sum_{m<4} a_m sin(w_m . i + phi_m) / sum |a_m|
/// with frequencies of up to `periods` periods over the grid along each axis: smooth, never
/// constant, seeded.
inline void fill_smooth(Volume<float>& vol, std::uint64_t seed, double amplitude = 1.0,
                        double offset = 0.0, double periods = 1.5) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0), phase(0.0, 6.283185307179586);
  const Index3 n = vol.geometry().size;
  const Box b = vol.box();
  for (int c = 0; c < vol.components(); ++c) {
    double a[4], w[4][3], ph[4], norm = 0;
    for (int m = 0; m < 4; ++m) {
      a[m] = 0.5 + 0.5 * std::abs(unit(rng));
      norm += a[m];
      for (int d = 0; d < 3; ++d) w[m][d] = unit(rng) * 6.283185307179586 * periods / double(std::max<index_t>(n[d], 2));
      ph[m] = phase(rng);
    }
    for (index_t k = b.lo.z; k < b.hi().z; ++k)
      for (index_t j = b.lo.y; j < b.hi().y; ++j)
        for (index_t i = b.lo.x; i < b.hi().x; ++i) {
          double s = 0;
          for (int m = 0; m < 4; ++m)
            s += a[m] * std::sin(w[m][0] * double(i) + w[m][1] * double(j) + w[m][2] * double(k) + ph[m]);
          vol(i, j, k, c) = float(offset + amplitude * s / norm);
        }
  }
}

/// A smooth scalar image of the whole grid, values in offset +- amplitude.
inline Volume<float> random_smooth_volume(const Geometry& g, std::uint64_t seed,
                                          double amplitude = 1.0, double offset = 0.0,
                                          double periods = 1.5) {
  Volume<float> v(g);
  fill_smooth(v, seed, amplitude, offset, periods);
  return v;
}

/// A smooth displacement field (3 component planes, mm) with |u_c| <= max_mm.
inline Volume<float> random_smooth_field(const Geometry& g, std::uint64_t seed, double max_mm,
                                         double periods = 1.5) {
  Volume<float> v(g, 3);
  fill_smooth(v, seed, max_mm, 0.0, periods);
  return v;
}

/// Independent uniform values in [lo, hi) (noise: the worst case for interpolation tests).
inline Volume<float> random_volume(const Geometry& g, std::uint64_t seed, double lo, double hi,
                                   int components = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  Volume<float> v(g, components);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = float(d(rng));
  return v;
}

inline Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

/// `b` grown by `halo` voxels along every axis (or only z when z_only), clipped to the grid.
inline Box grow_box(const Box& b, index_t halo, Index3 grid, bool z_only = false) {
  Box r;
  for (int a = 0; a < 3; ++a) {
    const index_t h = (z_only && a != 2) ? 0 : halo;
    const index_t lo = std::max<index_t>(0, b.lo[a] - h);
    const index_t hi = std::min<index_t>(grid[a], b.lo[a] + b.size[a] + h);
    r.lo[a] = lo;
    r.size[a] = hi - lo;
  }
  return r;
}

/// `count` z-slabs covering the grid, of nearly equal thickness.
inline std::vector<Box> z_slabs(Index3 grid, int count) {
  std::vector<Box> slabs;
  for (int s = 0; s < count; ++s) {
    const index_t z0 = grid.z * s / count, z1 = grid.z * (s + 1) / count;
    slabs.push_back(Box{{0, 0, z0}, {grid.x, grid.y, z1 - z0}});
  }
  return slabs;
}

/// A copy of `box` of `whole` in a separate allocation (a slab with its halo, as a rank holds it).
template <class T>
Volume<T> copy_box(const Volume<T>& whole, const Box& box) {
  Volume<T> part(whole.geometry(), box, whole.components());
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) part(i, j, k, c) = whole(i, j, k, c);
  return part;
}

/// Copies `box` of `part` into `whole` (stitching).
template <class T>
void paste_box(Volume<T>& whole, const Volume<T>& part, const Box& box) {
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) whole(i, j, k, c) = part(i, j, k, c);
}

/// Fills a host volume with quiet NaNs (poison before an op; check what it wrote).
template <class T>
void poison(Volume<T>& v) {
  v.fill(std::numeric_limits<T>::quiet_NaN());
}

/// Max |a - b| over `box` (all components); +inf if any compared value is not finite in one and
/// finite in the other, or NaN in both.
inline double max_abs_diff(const Volume<float>& a, const Volume<float>& b, const Box& box) {
  double m = 0;
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) {
          const double d = std::abs(double(a(i, j, k, c)) - double(b(i, j, k, c)));
          if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
          m = std::max(m, d);
        }
  return m;
}

inline double max_abs(const Volume<float>& a, const Box& box) {
  double m = 0;
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i)
          m = std::max(m, std::abs(double(a(i, j, k, c))));
  return m;
}

/// Normwise relative error max|a - ref| / max|ref| over `box` (absolute if ref is all zero).
inline double max_rel_error(const Volume<float>& a, const Volume<float>& ref, const Box& box) {
  const double scale = max_abs(ref, box);
  const double d = max_abs_diff(a, ref, box);
  return scale > 0 ? d / scale : d;
}

/// Relative error of two vectors: max |a - b| / max |b|.
inline double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0, s = 0;
  for (std::size_t n = 0; n < a.size() && n < b.size(); ++n) {
    d = std::max(d, std::abs(a[n] - b[n]));
    s = std::max(s, std::abs(b[n]));
  }
  if (a.size() != b.size() || !std::isfinite(d)) return std::numeric_limits<double>::infinity();
  return s > 0 ? d / s : d;
}

/// Bitwise equality over `box` (all components); NaNs compare by bit pattern.
template <class T>
bool bitwise_equal(const Volume<T>& a, const Volume<T>& b, const Box& box) {
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i)
          if (std::memcmp(&a(i, j, k, c), &b(i, j, k, c), sizeof(T)) != 0) return false;
  return true;
}

/// Number of elements (all components) of `v` inside `box` that are NaN, and outside it that are
/// not NaN: after poisoning, an op that writes exactly `box` gives {0, 0}.
struct PoisonCheck {
  index_t unwritten_inside = 0;
  index_t touched_outside = 0;
};
inline PoisonCheck check_written(const Volume<float>& v, const Box& box) {
  PoisonCheck r;
  const Box vb = v.box();
  for (int c = 0; c < v.components(); ++c)
    for (index_t k = vb.lo.z; k < vb.hi().z; ++k)
      for (index_t j = vb.lo.y; j < vb.hi().y; ++j)
        for (index_t i = vb.lo.x; i < vb.hi().x; ++i) {
          const bool nan = std::isnan(v(i, j, k, c));
          if (box.contains(i, j, k)) r.unwritten_inside += nan ? 1 : 0;
          else r.touched_outside += nan ? 0 : 1;
        }
  return r;
}

/// n elements of T in host or device memory (slice partials, scratch), freed on destruction.
template <class T>
class Buffer {
 public:
  Buffer(std::size_t n, MemorySpace space)
      : n_(n), space_(space), data_(static_cast<T*>(allocate_bytes(n * sizeof(T), space, "test buffer"))) {}
  ~Buffer() { free_bytes(data_, space_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* data() const { return data_; }
  std::size_t size() const { return n_; }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    copy_bytes(h.data(), MemorySpace::Host, data_, space_, n_ * sizeof(T));
    return h;
  }

 private:
  std::size_t n_;
  MemorySpace space_;
  T* data_;
};

/// Double-precision trilinear sample of component `c` of a whole-grid host volume at continuous
/// index p (the oracle for the ops' float sampler). zero_outside: neighbours outside the grid
/// contribute 0 and p beyond one voxel outside gives 0; otherwise p is clamped to the grid.
inline double ref_trilinear(const Volume<float>& v, Vec3d p, bool zero_outside, int c = 0) {
  const Index3 n = v.geometry().size;
  index_t i0[3];
  double t[3];
  for (int a = 0; a < 3; ++a) {
    double q = p[a];
    if (zero_outside) {
      if (!(q > -1.0 && q < double(n[a]))) return 0.0;
    } else {
      q = std::min(std::max(q, 0.0), double(n[a] - 1));
    }
    const double f = std::floor(q);
    i0[a] = index_t(f);
    t[a] = q - f;
  }
  double sum = 0;
  for (int dz = 0; dz < 2; ++dz)
    for (int dy = 0; dy < 2; ++dy)
      for (int dx = 0; dx < 2; ++dx) {
        index_t idx[3] = {i0[0] + dx, i0[1] + dy, i0[2] + dz};
        const double w = (dx ? t[0] : 1 - t[0]) * (dy ? t[1] : 1 - t[1]) * (dz ? t[2] : 1 - t[2]);
        bool inside = true;
        for (int a = 0; a < 3; ++a) {
          if (idx[a] < 0 || idx[a] >= n[a]) {
            inside = false;
            idx[a] = std::min(std::max<index_t>(idx[a], 0), n[a] - 1);
          }
        }
        if (!inside && zero_outside) continue;
        sum += w * double(v(idx[0], idx[1], idx[2], c));
      }
  return sum;
}

/// All three components of a field sampled with ref_trilinear.
inline Vec3d ref_trilinear3(const Volume<float>& v, Vec3d p, bool zero_outside) {
  return {ref_trilinear(v, p, zero_outside, 0), ref_trilinear(v, p, zero_outside, 1),
          ref_trilinear(v, p, zero_outside, 2)};
}

inline Vec3d vec_at(const Volume<float>& f, index_t i, index_t j, index_t k) {
  return {double(f(i, j, k, 0)), double(f(i, j, k, 1)), double(f(i, j, k, 2))};
}

inline Vec3d index3d(index_t i, index_t j, index_t k) { return {double(i), double(j), double(k)}; }

/// A geometry of `size` and `spacing`, direction `dir`, whose physical centre is `ref`'s.
inline Geometry centered_like(const Geometry& ref, Index3 size, Vec3d spacing, Mat3d dir) {
  Geometry g = make_geometry(size, spacing, {0, 0, 0}, dir);
  const Vec3d c_ref = ref.index_to_physical(
      {0.5 * double(ref.size.x - 1), 0.5 * double(ref.size.y - 1), 0.5 * double(ref.size.z - 1)});
  const Vec3d c_g = g.index_to_physical(
      {0.5 * double(size.x - 1), 0.5 * double(size.y - 1), 0.5 * double(size.z - 1)});
  g.origin = c_ref - c_g;
  return g;
}

/// A textured image: offset + sum of 5 random plane waves with periods of about 5 to 12 voxels
/// (plenty of local variance for small windows).
inline Volume<float> textured(const Geometry& g, std::uint64_t seed, double offset) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0), ph(0.0, 6.283185307179586);
  double a[5], w[5][3], phi[5];
  for (int m = 0; m < 5; ++m) {
    a[m] = 0.3 + 0.2 * std::abs(u(rng));
    for (int d = 0; d < 3; ++d) w[m][d] = 1.1 * u(rng);
    phi[m] = ph(rng);
  }
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        double s = offset;
        for (int m = 0; m < 5; ++m)
          s += a[m] * std::sin(w[m][0] * double(i) + w[m][1] * double(j) + w[m][2] * double(k) + phi[m]);
        v(i, j, k) = float(s);
      }
  return v;
}

/// Bytes this process has read through read(2) and friends so far (/proc/self/io rchar; 0 where
/// there is no /proc): what the slab-reading tests count.
inline std::uint64_t bytes_read_so_far() {
  std::FILE* f = std::fopen("/proc/self/io", "r");
  if (f == nullptr) return 0;
  char key[64];
  unsigned long long value = 0, rchar = 0;
  while (std::fscanf(f, "%63s %llu", key, &value) == 2)
    if (std::string(key) == "rchar:") rchar = value;
  std::fclose(f);
  return rchar;
}

}  // namespace gigareg::test

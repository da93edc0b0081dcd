#pragma once
// Set-up shared by the registration tests (tests/unit/test_registration.cpp on the CPU,
// tests/cuda/test_registration_cuda.cpp against it): grids, a head-like blob phantom, a phantom
// pair with a known smooth warp, resampling, error measures, stage parameters, quiet logs.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"
#include "gigareg/registration.hpp"
#include "test_util.hpp"

namespace gigareg::test {

inline Box whole(const Geometry& g) { return {{0, 0, 0}, g.size}; }

inline Geometry grid(Index3 size, Vec3d spacing, Vec3d origin = {0, 0, 0}, Mat3d dir = Mat3d::identity()) {
  return make_geometry(size, spacing, origin, dir);
}

inline Vec3d grid_center(const Geometry& g) {
  return g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

/// A head-like phantom: random Gaussian blobs inside a smooth ellipsoid, 0 near the borders.
inline Volume<float> blob_phantom(const Geometry& g, std::uint64_t seed, int blobs = 150) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(-1.0, 1.0), size(2.5, 6.0), amp(-60.0, 120.0);
  const Vec3d c = grid_center(g);
  const BoundingBox bb = g.physical_bounds();
  const Vec3d semi{0.36 * (bb.max.x - bb.min.x), 0.33 * (bb.max.y - bb.min.y), 0.34 * (bb.max.z - bb.min.z)};
  struct Blob { Vec3d p; double s, a; };
  std::vector<Blob> list;
  for (int b = 0; b < blobs; ++b) {
    Vec3d p{unit(rng), unit(rng), unit(rng)};
    const double n = std::sqrt(dot(p, p));
    if (n > 0.8) p = (0.8 / n) * p;
    list.push_back({Vec3d{c.x + p.x * semi.x, c.y + p.y * semi.y, c.z + p.z * semi.z}, size(rng), amp(rng)});
  }
  Volume<float> v(g);
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d p = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d q{(p.x - c.x) / semi.x, (p.y - c.y) / semi.y, (p.z - c.z) / semi.z};
        const double r = std::sqrt(dot(q, q));
        const double env = 1.0 / (1.0 + std::exp((r - 1.0) / 0.04));
        double s = 100.0;
        for (const Blob& b : list) {
          const Vec3d d = p - b.p;
          s += b.a * std::exp(-dot(d, d) / (2 * b.s * b.s));
        }
        v(i, j, k) = float(env * std::max(s, 0.0));
      }
  return v;
}

inline Volume<float> warp_image(const Volume<float>& moving, const Geometry& out_grid, const Affined& a,
                         const Volume<float>* u = nullptr, Interpolation interp = Interpolation::Linear) {
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = moving.geometry();
  in.fixed_geometry = out_grid;
  in.affine = a;
  if (u) in.displacement = u->view();
  in.interpolation = interp;
  Volume<float> out(out_grid);
  warp(Context::cpu(), in, out.view(), whole(out_grid));
  return out;
}

/// `image` resampled onto `out` through a known transform A(x + u(x)): u a smooth warp on `out`
/// of up to 3 mm (wavelength 45 mm), A the affine of these rotations (degrees), scales and
/// translation (mm) about the centre of `out`.
inline Volume<float> known_transform_of(const Volume<float>& image, const Geometry& out, Vec3d rotation_deg,
                                        Vec3d scale, Vec3d translation_mm) {
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 3.0;
  spec.wavelength_mm = 45.0;
  const Volume<float> u = make_smooth_deformation(out, spec);
  return warp_image(image, out, make_affine(rotation_deg, scale, translation_mm, grid_center(out)), &u);
}

inline double mean_abs_diff(const Volume<float>& a, const Volume<float>& b) {
  double s = 0;
  for (index_t n = 0; n < a.voxel_count(); ++n) s += std::abs(double(a.data()[n]) - b.data()[n]);
  return s / double(a.voxel_count());
}

inline double intensity_span(const Volume<float>& a) {
  float lo = a.data()[0], hi = lo;
  for (index_t n = 0; n < a.voxel_count(); ++n) {
    lo = std::min(lo, a.data()[n]);
    hi = std::max(hi, a.data()[n]);
  }
  return double(hi) - double(lo);
}

/// RMS over the fixed voxels of |a(x) - b(x)| in voxels of the fixed grid (smallest spacing).
inline double rms_point_error(const Geometry& g, const Affined& a, const Affined& b) {
  double s = 0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const Vec3d x = g.index_to_physical({double(i), double(j), double(k)});
        const Vec3d d = a(x) - b(x);
        s += dot(d, d);
      }
  const double h = std::min(g.spacing.x, std::min(g.spacing.y, g.spacing.z));
  return std::sqrt(s / double(g.voxel_count())) / h;
}

inline double loss_of(MetricType type, const Volume<float>& f, const Volume<float>& w) {
  const Geometry& g = f.geometry();
  std::vector<double> part(std::size_t(g.size.z) * kLossTerms);
  SlicePartials p{part.data(), g.size.z, kLossTerms};
  if (type == MetricType::MeanSquares) {
    mse_loss(Context::cpu(), f.view(), w.view(), {}, whole(g), p, {});
  } else {
    LnccParams lp;
    lp.radius = 2;
    lncc_loss(Context::cpu(), f.view(), w.view(), {}, whole(g), lp, p, {});
  }
  return reduce_loss(Context::cpu(), p).value();
}

inline StageParams stage(TransformType t, MetricType m, std::vector<int> iterations, std::vector<double> shrink,
                  std::vector<double> sigmas, double step) {
  StageParams s;
  s.transform = t;
  s.metric.type = m;
  s.metric.radius = 2;
  s.metric.bins = 32;
  s.convergence.iterations = std::move(iterations);
  s.convergence.threshold = 1e-6;
  s.convergence.window = 10;
  s.shrink_factors = std::move(shrink);
  s.smoothing_sigmas = std::move(sigmas);
  s.sigmas_in_mm = false;
  s.step = step;
  return s;
}

template <class F>
inline bool throws_invalid_argument(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind() == ErrorKind::InvalidArgument;
  }
  return false;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct QuietLogs {
  QuietLogs() { set_log_level(LogLevel::Error); }
  ~QuietLogs() { set_log_level(LogLevel::Warning); }
};

struct WarpPhantom {
  Geometry g;
  Volume<float> fixed, moving, truth;  // truth: the displacement u with moving(x + u(x)) = fixed(x)
};

inline WarpPhantom warp_phantom() {
  WarpPhantom w;
  w.g = grid({48, 48, 48}, {2, 2, 2}, {-48, -48, -48});
  w.fixed = blob_phantom(w.g, 5);
  SmoothDeformationSpec spec;
  spec.max_displacement_mm = 5.0;  // 2.5 voxels
  spec.wavelength_mm = 50.0;
  spec.seed = 9;
  w.truth = make_smooth_deformation(w.g, spec);
  // moving = fixed o (x + truth)^-1, so that moving(x + truth(x)) = fixed(x).
  Volume<float> inv(w.g, 3);
  InverseOptions o;
  o.iterations = 100;
  o.tolerance = 1e-5;
  invert_field(Context::cpu(), w.truth.view(), w.g, w.g, inv.view(), whole(w.g), o);
  w.moving = warp_image(w.fixed, w.g, Affined::identity(), &inv);
  return w;
}

/// RMS of |a - b| over the voxels where the fixed image has structure (> 10% of its maximum).
inline double field_error(const WarpPhantom& w, const Volume<float>* u) {
  const index_t n = w.g.voxel_count();
  float fmax = 0;
  for (index_t i = 0; i < n; ++i) fmax = std::max(fmax, w.fixed.data()[i]);
  double s = 0;
  index_t count = 0;
  for (index_t i = 0; i < n; ++i) {
    if (w.fixed.data()[i] < 0.1f * fmax) continue;
    double d2 = 0;
    for (int c = 0; c < 3; ++c) {
      const double d = double(w.truth.data()[c * n + i]) - (u ? double(u->data()[c * n + i]) : 0.0);
      d2 += d * d;
    }
    s += d2;
    ++count;
  }
  return std::sqrt(s / double(count));
}

}  // namespace gigareg::test

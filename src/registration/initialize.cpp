// Initial transforms: image centres, intensity-weighted centres of mass, principal axes.

#include <Eigen/Dense>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/log.hpp"
#include "registration/level_report.hpp"

namespace gigareg {

ImageMoments image_moments(const Volume<float>& image) { return image_moments(image, single_process()); }

ImageMoments image_moments(const Volume<float>& image, const Partition& part) {
  GIGAREG_REQUIRE(image.space() == MemorySpace::Host && image.components() == 1 && !image.empty(),
                  "image_moments needs a scalar host volume");
  const Geometry& g = image.geometry();
  const Box b = part.owned(g.size);
  GIGAREG_REQUIRE(image.box().contains(b), "image_moments: the volume must hold this process's slab");
  const Affined p = g.index_to_physical_map();
  // Moments about the grid's centre (less cancellation than about the origin), summed per
  // z slice in double and then over slices in order: deterministic for any thread count.
  const Vec3d ref = g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1),
                                         0.5 * double(g.size.z - 1)});
  constexpr int kTerms = 10;  // mass, 3 first moments, 6 second moments
  std::vector<double> slices(std::size_t(b.size.z) * kTerms, 0.0);
  const VolumeView<const float> v = image.view();
#pragma omp parallel for schedule(static)
  for (index_t kk = 0; kk < b.size.z; ++kk) {
    double acc[kTerms] = {};
    const index_t k = b.lo.z + kk;
    for (index_t j = b.lo.y; j < b.lo.y + b.size.y; ++j)
      for (index_t i = b.lo.x; i < b.lo.x + b.size.x; ++i) {
        const double w = double(v.at(i, j, k));
        if (!(w > 0)) continue;  // negative and NaN intensities carry no mass
        const Vec3d x = p(Vec3d{double(i), double(j), double(k)}) - ref;
        acc[0] += w;
        acc[1] += w * x.x;
        acc[2] += w * x.y;
        acc[3] += w * x.z;
        acc[4] += w * x.x * x.x;
        acc[5] += w * x.x * x.y;
        acc[6] += w * x.x * x.z;
        acc[7] += w * x.y * x.y;
        acc[8] += w * x.y * x.z;
        acc[9] += w * x.z * x.z;
      }
    for (int t = 0; t < kTerms; ++t) slices[std::size_t(kk) * kTerms + t] = acc[t];
  }
  // Every process's slices in global order, summed in that order: the same sums for any P.
  slices = part.gather_host_slices(slices, g.size.z, kTerms);
  double s[kTerms] = {};
  for (index_t kk = 0; kk < g.size.z; ++kk)
    for (int t = 0; t < kTerms; ++t) s[t] += slices[std::size_t(kk) * kTerms + t];
  ImageMoments m;
  m.mass = s[0];
  if (!(s[0] > 0)) {
    m.center = ref;
    return m;
  }
  const Vec3d mean{s[1] / s[0], s[2] / s[0], s[3] / s[0]};
  m.center = ref + mean;
  const double e[6] = {s[4] / s[0] - mean.x * mean.x, s[5] / s[0] - mean.x * mean.y,
                       s[6] / s[0] - mean.x * mean.z, s[7] / s[0] - mean.y * mean.y,
                       s[8] / s[0] - mean.y * mean.z, s[9] / s[0] - mean.z * mean.z};
  m.covariance = Mat3d{{e[0], e[1], e[2], e[1], e[3], e[4], e[2], e[4], e[5]}};
  return m;
}

namespace {

Vec3d grid_center(const Geometry& g) {
  return g.index_to_physical(
      {0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

/// Relative gap below which two second moments are taken as equal: their principal axes are then
/// not defined by the image (any rotation in their plane fits), and differences between subjects
/// swing them arbitrarily (two brains' left-right and inferior-superior moments differ by 5-10%).
constexpr double kAxisGap = 0.10;

struct Axes {
  Eigen::Matrix3d vectors;  // columns: principal axes, eigenvalues ascending
  Eigen::Vector3d values;
  bool valid = false;
  bool gap_low = false;   // lambda0 well separated from lambda1
  bool gap_high = false;  // lambda2 well separated from lambda1
};

Axes principal_axes(const Mat3d& cov) {
  Eigen::Matrix3d c;
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) c(r, k) = cov(r, k);
  const Eigen::SelfAdjointEigenSolver<Eigen::Matrix3d> es(c);
  Axes a;
  a.vectors = es.eigenvectors();
  a.values = es.eigenvalues();
  a.valid = es.info() == Eigen::Success && a.values(0) > 0;
  if (a.valid) {
    a.gap_low = a.values(1) - a.values(0) >= kAxisGap * a.values(1);
    a.gap_high = a.values(2) - a.values(1) >= kAxisGap * a.values(2);
  }
  return a;
}

/// The smallest rotation taking unit vector a onto b or onto -b, whichever is closer (<= 90
/// degrees): Rodrigues about a x b.
Eigen::Matrix3d align_axis(Eigen::Vector3d a, Eigen::Vector3d b) {
  a.normalize();
  b.normalize();
  if (a.dot(b) < 0) b = -b;
  const Eigen::Vector3d axis = a.cross(b);
  const double s = axis.norm(), c = a.dot(b);
  if (s < 1e-12) return Eigen::Matrix3d::Identity();
  Eigen::Matrix3d k;
  const Eigen::Vector3d n = axis / s;
  k << 0, -n.z(), n.y(), n.z(), 0, -n.x(), -n.y(), n.x(), 0;
  return Eigen::Matrix3d::Identity() + s * k + (1 - c) * k * k;
}

/// R = E_m Q E_f^T over the 48 signed permutations Q: proper rotations only (det +1, never a
/// reflection), the one closest to the identity (largest trace).
Eigen::Matrix3d closest_axes_rotation(const Axes& af, const Axes& am) {
  std::array<int, 3> perm{0, 1, 2};
  double best_trace = -1e300;
  Eigen::Matrix3d best = Eigen::Matrix3d::Identity();
  do {
    for (int signs = 0; signs < 8; ++signs) {
      Eigen::Matrix3d q = Eigen::Matrix3d::Zero();
      for (int k = 0; k < 3; ++k) q(perm[std::size_t(k)], k) = (signs >> k & 1) ? -1.0 : 1.0;
      const Eigen::Matrix3d r = am.vectors * q * af.vectors.transpose();
      if (r.determinant() < 0.5) continue;
      if (r.trace() > best_trace) {
        best_trace = r.trace();
        best = r;
      }
    }
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

}  // namespace

Initialization initialize_transform(const InitialTransform& init, const Volume<float>& fixed,
                                    const Volume<float>& moving, const Partition* partition) {
  const Partition& part = partition != nullptr ? *partition : single_process();
  Initialization out;
  out.center = grid_center(fixed.geometry());
  switch (init.type) {
    case InitialTransformType::Identity:
    case InitialTransformType::Given:
      out.affine = init.affine;
      return out;
    case InitialTransformType::GeometricCenter: {
      const Vec3d d = grid_center(moving.geometry()) - out.center;
      out.affine = {Mat3d::identity(), d};
      return out;
    }
    case InitialTransformType::Origins: {
      const Vec3d d = moving.geometry().origin - fixed.geometry().origin;
      out.affine = {Mat3d::identity(), d};
      return out;
    }
    case InitialTransformType::CenterOfMass:
    case InitialTransformType::Moments:
      break;
  }
  const ImageMoments mf = image_moments(fixed, part), mm = image_moments(moving, part);
  if (!(mf.mass > 0) || !(mm.mass > 0))
    throw_error(ErrorKind::InvalidInput, "initial transform",
                "an image has no positive intensity: its centre of mass is undefined");
  out.center = mf.center;
  out.affine = {Mat3d::identity(), mm.center - mf.center};
  if (init.type == InitialTransformType::CenterOfMass) return out;

  const Axes af = principal_axes(mf.covariance), am = principal_axes(mm.covariance);
  Eigen::Matrix3d best;
  if (af.valid && am.valid && af.gap_low && af.gap_high && am.gap_low && am.gap_high) {
    best = closest_axes_rotation(af, am);  // all three axes are defined
  } else if (af.valid && am.valid && af.gap_high && am.gap_high) {
    best = align_axis(af.vectors.col(2), am.vectors.col(2));  // only the longest axis is
  } else if (af.valid && am.valid && af.gap_low && am.gap_low) {
    best = align_axis(af.vectors.col(0), am.vectors.col(0));  // only the shortest axis is
  } else {
    log(LogLevel::Warning,
        "moments initialisation: the principal axes are not well defined (second moments within "
        "10%); using the centres of mass only");
    return out;
  }
  const double best_trace = best.trace();
  Mat3d rot{};
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) rot(r, k) = best(r, k);
  // y = R (x - c_f) + c_m
  out.affine = {rot, mm.center - rot * mf.center};
  const double angle =
      std::acos(std::clamp((best_trace - 1.0) / 2.0, -1.0, 1.0)) * 180.0 / 3.14159265358979323846;
  log(LogLevel::Info, "moments initialisation: rotation of " + reg::fmt(angle, 3) + " degrees");
  return out;
}

}  // namespace gigareg

// The warp op on the CPU reference backend: exactness (identity, integer shifts), a double-
// precision oracle for values, central finite differences for the gradients w.r.t. u, the 12
// affine parameters and the moving image, label voting, z-slab stitching and determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/warp.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

const Context kCpu = Context::cpu();

/// y = c + L (x - c) + t.
Affined affine_about(Vec3d c, const Mat3d& l, Vec3d t) {
  const Vec3d lc = l * c;
  return {l, c - lc + t};
}

struct Problem {
  Geometry fixed, moving_grid;
  Volume<float> moving, u, weights;
  Affined affine;
};

/// Fixed and moving grids that differ in size, spacing, origin and direction; a smooth moving
/// image; a mild affine (rotation, scaling, shear, shift) about the common centre; a smooth u.
Problem make_problem(std::uint64_t seed, double u_max_mm = 1.5) {
  Problem p;
  p.fixed = oblique_geometry({24, 20, 18});
  p.moving_grid = centered_like(p.fixed, {26, 23, 17}, {1.05, 0.93, 1.45}, rotation(-0.12, 0.27, 0.05));
  p.moving = random_smooth_volume(p.moving_grid, seed, 1.0, 2.0);
  p.u = random_smooth_field(p.fixed, seed + 1, u_max_mm);
  p.weights = random_volume(p.fixed, seed + 2, -0.5, 1.5);
  const Mat3d l = rotation(0.05, -0.08, 0.11) * Mat3d{{1.04, 0.03, 0.0, -0.02, 0.97, 0.04, 0.01, 0.0, 1.02}};
  const Vec3d c = p.fixed.index_to_physical({11.5, 9.5, 8.5});
  p.affine = affine_about(c, l, {0.7, -0.4, 0.3});
  return p;
}

WarpInputs inputs(const Problem& p, Interpolation interp, Boundary b, bool with_u = true) {
  WarpInputs in;
  in.moving = p.moving.view();
  in.moving_geometry = p.moving_grid;
  in.fixed_geometry = p.fixed;
  in.affine = p.affine;
  if (with_u) in.displacement = p.u.view();
  in.interpolation = interp;
  in.boundary = b;
  return in;
}

Volume<float> run_warp(const WarpInputs& in) {
  Volume<float> out(in.fixed_geometry);
  warp(kCpu, in, out.view(), whole_box(in.fixed_geometry));
  return out;
}

/// Moving continuous index of fixed voxel (i, j, k) displaced by u, in double.
Vec3d ref_position(const Geometry& fixed, const Geometry& moving, const Affined& a, index_t i,
                   index_t j, index_t k, Vec3d u) {
  const Vec3d x = fixed.index_to_physical(index3d(i, j, k));
  return moving.physical_to_index(a(x + u));
}

/// L = sum_i w(i) out(i) with the double oracle, for a given affine.
double ref_loss(const Problem& p, const Affined& a, Boundary b, const Volume<float>& image) {
  double l = 0;
  const Index3 n = p.fixed.size;
  for (index_t k = 0; k < n.z; ++k)
    for (index_t j = 0; j < n.y; ++j)
      for (index_t i = 0; i < n.x; ++i) {
        const Vec3d m = ref_position(p.fixed, p.moving_grid, a, i, j, k, vec_at(p.u, i, j, k));
        l += double(p.weights(i, j, k)) * ref_trilinear(image, m, b == Boundary::Zero);
      }
  return l;
}

double dist_to_integer(double x) { return std::abs(x - std::round(x)); }

bool near_knot(Vec3d m, double tol) {
  return dist_to_integer(m.x) < tol || dist_to_integer(m.y) < tol || dist_to_integer(m.z) < tol;
}

/// Label vote in double: the winning label and the weights of the best and second-best labels.
double ref_label(const Volume<float>& v, Vec3d p, bool zero, double& best_w, double& second_w) {
  const Index3 n = v.geometry().size;
  best_w = second_w = 0;
  index_t i0[3];
  double t[3];
  for (int a = 0; a < 3; ++a) {
    double q = p[a];
    if (zero) {
      if (!(q > -1.0 && q < double(n[a]))) return 0.0;
    } else {
      q = std::min(std::max(q, 0.0), double(n[a] - 1));
    }
    i0[a] = index_t(std::floor(q));
    t[a] = q - std::floor(q);
  }
  std::map<double, double> votes;
  for (int q = 0; q < 8; ++q) {
    const int d[3] = {q & 1, (q >> 1) & 1, q >> 2};
    index_t idx[3];
    bool inside = true;
    double w = 1;
    for (int a = 0; a < 3; ++a) {
      idx[a] = i0[a] + d[a];
      w *= d[a] ? t[a] : 1 - t[a];
      if (idx[a] < 0 || idx[a] >= n[a]) {
        inside = false;
        idx[a] = std::min(std::max<index_t>(idx[a], 0), n[a] - 1);
      }
    }
    const double label = (!inside && zero) ? 0.0 : double(v(idx[0], idx[1], idx[2]));
    votes[label] += w;
  }
  double best = 0;
  best_w = -1;
  for (const auto& [label, w] : votes)  // ascending labels: ties keep the smaller
    if (w > best_w) {
      second_w = best_w;
      best_w = w;
      best = label;
    } else if (w > second_w) {
      second_w = w;
    }
  return best;
}

double ref_nearest(const Volume<float>& v, Vec3d p, bool zero) {
  const Index3 n = v.geometry().size;
  index_t idx[3];
  for (int a = 0; a < 3; ++a) {
    double q = p[a];
    if (zero) {
      if (!(q >= -0.5 && q < double(n[a]) - 0.5)) return 0.0;
    } else {
      q = std::min(std::max(q, 0.0), double(n[a] - 1));
    }
    idx[a] = std::min<index_t>(std::max<index_t>(index_t(std::floor(q + 0.5)), 0), n[a] - 1);
  }
  return v(idx[0], idx[1], idx[2]);
}

}  // namespace

// An identity transform between equal (oblique, anisotropic) grids returns the image bitwise, for
// every interpolation and boundary rule, with and without an all-zero displacement field.
TEST(Warp, IdentityReturnsImageExactly) {
  const Geometry g = oblique_geometry({17, 13, 11});
  const Volume<float> image = random_volume(g, 5, -3, 7);
  Volume<float> zero_u(g, 3);
  zero_u.fill(0.f);
  for (Interpolation interp : {Interpolation::Linear, Interpolation::Nearest, Interpolation::Label})
    for (Boundary b : {Boundary::Zero, Boundary::Border})
      for (bool with_u : {false, true}) {
        WarpInputs in;
        in.moving = image.view();
        in.moving_geometry = g;
        in.fixed_geometry = g;
        if (with_u) in.displacement = zero_u.view();
        in.interpolation = interp;
        in.boundary = b;
        const Volume<float> out = run_warp(in);
        EXPECT_TRUE(bitwise_equal(out, image, whole_box(g)))
            << "interp " << int(interp) << " boundary " << int(b) << " u " << with_u;
      }
}

// A translation by an integer number of moving voxels (along the oblique axes) shifts the data:
// out(i) = I(i + s) inside, 0 (Zero) or the clamped voxel (Border) outside. Same for a
// displacement field holding that translation instead of the affine.
TEST(Warp, IntegerTranslationShiftsData) {
  const Geometry g = oblique_geometry({15, 12, 10});
  const Volume<float> image = random_volume(g, 6, 1, 9);
  const Index3 s{2, -1, 3};
  const Vec3d t = g.index_to_physical_map().matrix * Vec3d{double(s.x), double(s.y), double(s.z)};
  Volume<float> u_shift(g, 3);
  for (index_t e = 0; e < g.voxel_count(); ++e)
    for (int c = 0; c < 3; ++c) u_shift.data()[c * g.voxel_count() + e] = float(t[c]);
  for (Interpolation interp : {Interpolation::Linear, Interpolation::Nearest, Interpolation::Label})
    for (Boundary b : {Boundary::Zero, Boundary::Border})
      for (bool via_field : {false, true}) {
        WarpInputs in;
        in.moving = image.view();
        in.moving_geometry = g;
        in.fixed_geometry = g;
        if (via_field) in.displacement = u_shift.view();
        else in.affine = Affined{Mat3d::identity(), t};
        in.interpolation = interp;
        in.boundary = b;
        const Volume<float> out = run_warp(in);
        index_t wrong = 0;
        for (index_t k = 0; k < g.size.z; ++k)
          for (index_t j = 0; j < g.size.y; ++j)
            for (index_t i = 0; i < g.size.x; ++i) {
              index_t q[3] = {i + s.x, j + s.y, k + s.z};
              bool inside = true;
              for (int a = 0; a < 3; ++a)
                if (q[a] < 0 || q[a] >= g.size[a]) {
                  inside = false;
                  q[a] = std::min<index_t>(std::max<index_t>(q[a], 0), g.size[a] - 1);
                }
              const float expect = (!inside && b == Boundary::Zero) ? 0.f : image(q[0], q[1], q[2]);
              // A displacement field in float is not an exact integer shift after the fold:
              // compare with a tolerance there, bitwise for the affine.
              const float got = out(i, j, k);
              const bool ok = via_field ? std::abs(got - expect) <= 1e-4f * 9.f : got == expect;
              wrong += ok ? 0 : 1;
            }
        EXPECT_EQ(wrong, 0) << "interp " << int(interp) << " boundary " << int(b) << " field "
                            << via_field;
      }
}

// Float op against the double oracle for linear and nearest, different grids, affine and u.
TEST(Warp, ValuesMatchDoubleReference) {
  const Problem p = make_problem(11);
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    const Volume<float> lin = run_warp(inputs(p, Interpolation::Linear, b));
    const Volume<float> near = run_warp(inputs(p, Interpolation::Nearest, b));
    double worst = 0;
    index_t nearest_checked = 0, nearest_wrong = 0, outside = 0;
    for (index_t k = 0; k < p.fixed.size.z; ++k)
      for (index_t j = 0; j < p.fixed.size.y; ++j)
        for (index_t i = 0; i < p.fixed.size.x; ++i) {
          const Vec3d m = ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, vec_at(p.u, i, j, k));
          for (int a = 0; a < 3; ++a) outside += (m[a] < 0 || m[a] > p.moving_grid.size[a] - 1) ? 1 : 0;
          worst = std::max(worst, std::abs(lin(i, j, k) - ref_trilinear(p.moving, m, b == Boundary::Zero)));
          const Vec3d half{m.x + 0.5, m.y + 0.5, m.z + 0.5};
          if (near_knot(half, 1e-3)) continue;  // a rounding tie: float and double may differ
          ++nearest_checked;
          nearest_wrong += near(i, j, k) == float(ref_nearest(p.moving, m, b == Boundary::Zero)) ? 0 : 1;
        }
    EXPECT_GT(outside, 0) << "some samples should leave the moving grid (boundary rule exercised)";
    EXPECT_LT(worst / 3.0, 1e-5) << "boundary " << int(b);
    EXPECT_GT(nearest_checked, p.fixed.voxel_count() / 2);
    EXPECT_EQ(nearest_wrong, 0);
  }
}

// dL/du per voxel against central differences of the double oracle (L = sum w out), at sample
// points away from the knots of the trilinear interpolant.
TEST(Warp, GradientWrtDisplacementMatchesFiniteDifferences) {
  const Problem p = make_problem(21);
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    const WarpInputs in = inputs(p, Interpolation::Linear, b);
    Volume<float> grad_u(p.fixed, 3);
    WarpGradients grads;
    grads.displacement = grad_u.view();
    warp_backward(kCpu, in, p.weights.view(), whole_box(p.fixed), grads);
    const double h = 1e-4;
    double worst = 0, scale = 0;
    index_t checked = 0;
    for (index_t k = 0; k < p.fixed.size.z; ++k)
      for (index_t j = 0; j < p.fixed.size.y; ++j)
        for (index_t i = 0; i < p.fixed.size.x; ++i) {
          const Vec3d u0 = vec_at(p.u, i, j, k);
          const Vec3d m = ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, u0);
          if (near_knot(m, 2e-3)) continue;
          ++checked;
          for (int c = 0; c < 3; ++c) {
            Vec3d up = u0, um = u0;
            up[c] += h;
            um[c] -= h;
            const double fp = ref_trilinear(p.moving, ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, up), b == Boundary::Zero);
            const double fm = ref_trilinear(p.moving, ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, um), b == Boundary::Zero);
            const double fd = double(p.weights(i, j, k)) * (fp - fm) / (2 * h);
            worst = std::max(worst, std::abs(fd - grad_u(i, j, k, c)));
            scale = std::max(scale, std::abs(fd));
          }
        }
    EXPECT_GT(checked, p.fixed.voxel_count() / 2);
    EXPECT_GT(scale, 0.05);
    EXPECT_LT(worst / scale, 1e-4) << "boundary " << int(b) << " worst " << worst << " scale " << scale;
  }
}

// The 12 affine-parameter gradients (row-major [M | t]) against central differences of the double
// oracle, with and without a displacement field.
TEST(Warp, GradientWrtAffineMatchesFiniteDifferences) {
  const Problem p = make_problem(31);
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    std::vector<double> partials(std::size_t(p.fixed.size.z) * kAffineTerms, -1.0);
    WarpGradients grads;
    grads.affine = {partials.data(), p.fixed.size.z, kAffineTerms};
    warp_backward(kCpu, inputs(p, Interpolation::Linear, b), p.weights.view(), whole_box(p.fixed), grads);
    const std::vector<double> analytic = reduce_slices(kCpu, grads.affine);
    std::vector<double> fd(kAffineTerms);
    for (int term = 0; term < kAffineTerms; ++term) {
      const int r = term / 4, c = term % 4;
      const double h = c < 3 ? 1e-6 : 1e-5;
      Affined ap = p.affine, am = p.affine;
      if (c < 3) {
        ap.matrix(r, c) += h;
        am.matrix(r, c) -= h;
      } else {
        ap.offset[r] += h;
        am.offset[r] -= h;
      }
      fd[std::size_t(term)] = (ref_loss(p, ap, b, p.moving) - ref_loss(p, am, b, p.moving)) / (2 * h);
    }
    const double err = max_rel_error(analytic, fd);
    EXPECT_LT(err, 1e-4) << "boundary " << int(b);
    for (int t = 0; t < kAffineTerms; ++t)
      EXPECT_NEAR(analytic[std::size_t(t)], fd[std::size_t(t)], 1e-4 * std::abs(fd[std::size_t(t)]) + 1e-3)
          << "term " << t;
  }
}

// dL/dI (scatter) against the exact directional derivative: L is linear in I, so
// <dL/dI, dI> = sum_i w(i) dI(m(i)) for any dI, evaluated with the double oracle.
TEST(Warp, GradientWrtMovingImageMatchesDirectionalDerivative) {
  const Problem p = make_problem(41);
  const Volume<float> direction = random_volume(p.moving_grid, 42, -1, 1);
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    Volume<float> grad_m(p.moving_grid);
    grad_m.fill(0.f);
    WarpGradients grads;
    grads.moving = grad_m.view();
    warp_backward(kCpu, inputs(p, Interpolation::Linear, b), p.weights.view(), whole_box(p.fixed), grads);
    double analytic = 0;
    for (index_t e = 0; e < grad_m.element_count(); ++e)
      analytic += double(grad_m.data()[e]) * double(direction.data()[e]);
    const double expect = ref_loss(p, p.affine, b, direction);
    EXPECT_NEAR(analytic, expect, 1e-5 * std::abs(expect) + 1e-4) << "boundary " << int(b);
    EXPECT_GT(std::abs(expect), 1.0);
  }
}

// Label voting on noise labels: every output is a label of one of its 8 neighbours (or 0 outside
// with Zero), and it agrees with a double-precision vote except at near-ties of the weights.
TEST(Warp, LabelNeverInventsLabels) {
  Problem p = make_problem(51);
  const float labels[] = {3.f, 7.f, 12.f, 40.f, 41.f};
  std::mt19937_64 rng(52);
  for (index_t e = 0; e < p.moving.element_count(); ++e) p.moving.data()[e] = labels[rng() % 5];
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    const Volume<float> out = run_warp(inputs(p, Interpolation::Label, b));
    index_t invented = 0, mismatched = 0, not_tie = 0;
    std::set<float> seen;
    for (index_t k = 0; k < p.fixed.size.z; ++k)
      for (index_t j = 0; j < p.fixed.size.y; ++j)
        for (index_t i = 0; i < p.fixed.size.x; ++i) {
          const float got = out(i, j, k);
          seen.insert(got);
          const bool in_set = std::find(std::begin(labels), std::end(labels), got) != std::end(labels);
          if (!in_set && !(b == Boundary::Zero && got == 0.f)) ++invented;
          const Vec3d m = ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, vec_at(p.u, i, j, k));
          double bw, sw;
          const double expect = ref_label(p.moving, m, b == Boundary::Zero, bw, sw);
          if (got != float(expect)) {
            ++mismatched;
            if (bw - sw > 1e-4) ++not_tie;
          }
        }
    EXPECT_EQ(invented, 0);
    EXPECT_GE(seen.size(), 5u);
    EXPECT_LE(mismatched, p.fixed.voxel_count() / 1000) << "boundary " << int(b);
    EXPECT_EQ(not_tie, 0) << "a mismatch that is not a near-tie of the label weights";
  }
}

// Half-voxel shifts make exact ties: the smaller label wins; with Zero the outside is label 0.
TEST(Warp, LabelTiesGoToSmallerLabel) {
  const Geometry g = make_geometry({4, 1, 1}, {2.0, 1.0, 1.0}, {5, 6, 7});
  Volume<float> image(g);
  const float labels[4] = {7.f, 3.f, 9.f, 9.f};
  for (index_t i = 0; i < 4; ++i) image(i, 0, 0) = labels[i];
  WarpInputs in;
  in.moving = image.view();
  in.moving_geometry = g;
  in.fixed_geometry = g;
  in.affine = Affined{Mat3d::identity(), {1.0, 0.0, 0.0}};  // half a voxel along x
  in.interpolation = Interpolation::Label;
  in.boundary = Boundary::Border;
  Volume<float> out = run_warp(in);
  EXPECT_EQ(out(0, 0, 0), 3.f);  // 7 vs 3
  EXPECT_EQ(out(1, 0, 0), 3.f);  // 3 vs 9
  EXPECT_EQ(out(2, 0, 0), 9.f);
  EXPECT_EQ(out(3, 0, 0), 9.f);  // clamped
  in.boundary = Boundary::Zero;
  out = run_warp(in);
  EXPECT_EQ(out(3, 0, 0), 0.f);  // 9 vs the outside (0)
  in.affine = Affined{Mat3d::identity(), {-1.0, 0.0, 0.0}};
  out = run_warp(in);
  EXPECT_EQ(out(0, 0, 0), 0.f);  // the outside (0) vs 7
  EXPECT_EQ(out(1, 0, 0), 3.f);  // 7 vs 3
}

// On piecewise-constant labels (blocks of 8^3), wherever the 4x4x4 neighbourhood of the sample is one
// label, label voting and nearest neighbour both give it.
TEST(Warp, LabelMatchesNearestOnConstantRegions) {
  Problem p = make_problem(61);
  std::mt19937_64 rng(62);
  std::map<index_t, float> block_label;
  const Index3 n = p.moving_grid.size;
  for (index_t k = 0; k < n.z; ++k)
    for (index_t j = 0; j < n.y; ++j)
      for (index_t i = 0; i < n.x; ++i) {
        const index_t key = (k / 8) * 10000 + (j / 8) * 100 + i / 8;
        if (!block_label.count(key)) block_label[key] = float(1 + rng() % 50);
        p.moving(i, j, k) = block_label[key];
      }
  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    const Volume<float> lab = run_warp(inputs(p, Interpolation::Label, b));
    const Volume<float> near = run_warp(inputs(p, Interpolation::Nearest, b));
    index_t constant = 0, wrong = 0;
    for (index_t k = 0; k < p.fixed.size.z; ++k)
      for (index_t j = 0; j < p.fixed.size.y; ++j)
        for (index_t i = 0; i < p.fixed.size.x; ++i) {
          const Vec3d m = ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, vec_at(p.u, i, j, k));
          index_t lo[3];
          bool inside = true;
          for (int a = 0; a < 3; ++a) {
            lo[a] = index_t(std::floor(m[a])) - 1;
            inside = inside && lo[a] >= 0 && lo[a] + 3 < n[a];
          }
          if (!inside) continue;
          const float l0 = p.moving(lo[0], lo[1], lo[2]);
          bool same = true;
          for (index_t c = 0; c < 4 && same; ++c)
            for (index_t bb = 0; bb < 4 && same; ++bb)
              for (index_t a = 0; a < 4 && same; ++a) same = p.moving(lo[0] + a, lo[1] + bb, lo[2] + c) == l0;
          if (!same) continue;
          ++constant;
          wrong += (lab(i, j, k) == l0 && near(i, j, k) == l0) ? 0 : 1;
        }
    EXPECT_GT(constant, p.fixed.voxel_count() / 10);
    EXPECT_EQ(wrong, 0) << "boundary " << int(b);
  }
}

// A moving view that is only a window of the moving grid (covering the samples + 1) gives the
// whole-image result bitwise: the moving-image window of a rank.
TEST(Warp, MovingWindowMatchesWholeImage) {
  Problem p = make_problem(71, 0.8);
  // Shrink the transform so that the samples cover only part of the moving grid.
  p.affine = affine_about(p.fixed.index_to_physical({11.5, 9.5, 8.5}),
                          Mat3d{{0.3, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.3}}, {0, 0, 0});
  double lo[3] = {1e9, 1e9, 1e9}, hi[3] = {-1e9, -1e9, -1e9};
  for (index_t k = 0; k < p.fixed.size.z; ++k)
    for (index_t j = 0; j < p.fixed.size.y; ++j)
      for (index_t i = 0; i < p.fixed.size.x; ++i) {
        const Vec3d m = ref_position(p.fixed, p.moving_grid, p.affine, i, j, k, vec_at(p.u, i, j, k));
        for (int a = 0; a < 3; ++a) {
          lo[a] = std::min(lo[a], m[a]);
          hi[a] = std::max(hi[a], m[a]);
        }
      }
  Box window;
  for (int a = 0; a < 3; ++a) {
    window.lo[a] = std::max<index_t>(0, index_t(std::floor(lo[a])) - 1);
    const index_t h = std::min<index_t>(p.moving_grid.size[a], index_t(std::ceil(hi[a])) + 2);
    window.size[a] = h - window.lo[a];
  }
  ASSERT_LT(window.voxel_count(), p.moving_grid.voxel_count() / 2);
  const Volume<float> part = copy_box(p.moving, window);
  for (Interpolation interp : {Interpolation::Linear, Interpolation::Nearest, Interpolation::Label}) {
    WarpInputs in = inputs(p, interp, Boundary::Zero);
    const Volume<float> whole = run_warp(in);
    in.moving = part.view();
    const Volume<float> windowed = run_warp(in);
    EXPECT_TRUE(bitwise_equal(whole, windowed, whole_box(p.fixed))) << "interp " << int(interp);
  }
}

// Three z-slabs, each with its own copy of u and grad_out (halo 0), stitched: bitwise the whole-
// volume forward for every mode, and the whole-volume backward (grad_u, the affine slice partials,
// and dL/dI accumulated over the slabs in order).
TEST(Warp, SlabsStitchBitwise) {
  const Problem p = make_problem(81);
  const Box whole = whole_box(p.fixed);
  for (Interpolation interp : {Interpolation::Linear, Interpolation::Nearest, Interpolation::Label}) {
    const WarpInputs in = inputs(p, interp, Boundary::Zero);
    const Volume<float> ref = run_warp(in);
    Volume<float> stitched(p.fixed);
    for (const Box& s : z_slabs(p.fixed.size, 3)) {
      const Volume<float> u_slab = copy_box(p.u, s);
      WarpInputs ins = in;
      ins.displacement = u_slab.view();
      Volume<float> out(p.fixed, s, 1);
      warp(kCpu, ins, out.view(), s);
      paste_box(stitched, out, s);
    }
    EXPECT_TRUE(bitwise_equal(ref, stitched, whole)) << "interp " << int(interp);
  }

  for (Boundary b : {Boundary::Zero, Boundary::Border}) {
    const WarpInputs in = inputs(p, Interpolation::Linear, b);
    Volume<float> gu_ref(p.fixed, 3), gm_ref(p.moving_grid);
    gm_ref.fill(0.f);
    std::vector<double> pa_ref(std::size_t(p.fixed.size.z) * kAffineTerms);
    warp_backward(kCpu, in, p.weights.view(), whole,
                  {gu_ref.view(), {pa_ref.data(), p.fixed.size.z, kAffineTerms}, gm_ref.view()});

    Volume<float> gu(p.fixed, 3), gm(p.moving_grid);
    gm.fill(0.f);
    std::vector<double> pa;
    for (const Box& s : z_slabs(p.fixed.size, 3)) {
      const Volume<float> u_slab = copy_box(p.u, s), w_slab = copy_box(p.weights, s);
      WarpInputs ins = in;
      ins.displacement = u_slab.view();
      Volume<float> gu_slab(p.fixed, s, 3);
      std::vector<double> pa_slab(std::size_t(s.size.z) * kAffineTerms);
      warp_backward(kCpu, ins, w_slab.view(), s,
                    {gu_slab.view(), {pa_slab.data(), s.size.z, kAffineTerms}, gm.view()});
      paste_box(gu, gu_slab, s);
      pa.insert(pa.end(), pa_slab.begin(), pa_slab.end());
    }
    EXPECT_TRUE(bitwise_equal(gu_ref, gu, whole));
    EXPECT_TRUE(bitwise_equal(gm_ref, gm, whole_box(p.moving_grid)));
    ASSERT_EQ(pa.size(), pa_ref.size());
    EXPECT_EQ(std::memcmp(pa.data(), pa_ref.data(), pa.size() * sizeof(double)), 0);
  }
}

// Two runs, and runs with 1 and 2 OpenMP threads, are bitwise equal (values and gradients).
TEST(Warp, DeterministicAcrossRunsAndThreadCounts) {
  const Problem p = make_problem(91);
  const WarpInputs in = inputs(p, Interpolation::Linear, Boundary::Zero);
  struct Result {
    Volume<float> out, gu, gm;
    std::vector<double> pa;
  };
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Result r{Volume<float>(p.fixed), Volume<float>(p.fixed, 3), Volume<float>(p.moving_grid), {}};
    r.gm.fill(0.f);
    r.pa.resize(std::size_t(p.fixed.size.z) * kAffineTerms);
    warp(kCpu, in, r.out.view(), whole_box(p.fixed));
    warp_backward(kCpu, in, p.weights.view(), whole_box(p.fixed),
                  {r.gu.view(), {r.pa.data(), p.fixed.size.z, kAffineTerms}, r.gm.view()});
    return r;
  };
  const int saved = omp_get_max_threads();
  const Result a = run(2), b = run(2), c = run(1);
  omp_set_num_threads(saved);
  for (const Result* r : {&b, &c}) {
    EXPECT_TRUE(bitwise_equal(a.out, r->out, whole_box(p.fixed)));
    EXPECT_TRUE(bitwise_equal(a.gu, r->gu, whole_box(p.fixed)));
    EXPECT_TRUE(bitwise_equal(a.gm, r->gm, whole_box(p.moving_grid)));
    EXPECT_EQ(std::memcmp(a.pa.data(), r->pa.data(), a.pa.size() * sizeof(double)), 0);
  }
}

// Writes only the owned box of a larger output view.
TEST(Warp, WritesOnlyOwnedBox) {
  const Problem p = make_problem(101);
  const Box owned{{3, 2, 4}, {15, 11, 9}};
  Volume<float> out(p.fixed), gu(p.fixed, 3);
  poison(out);
  poison(gu);
  const WarpInputs in = inputs(p, Interpolation::Linear, Boundary::Border);
  warp(kCpu, in, out.view(), owned);
  WarpGradients grads;
  grads.displacement = gu.view();
  warp_backward(kCpu, in, p.weights.view(), owned, grads);
  for (const Volume<float>* v : {&out, &gu}) {
    const PoisonCheck c = check_written(*v, owned);
    EXPECT_EQ(c.unwritten_inside, 0);
    EXPECT_EQ(c.touched_outside, 0);
  }
}

TEST(Warp, RejectsBadArguments) {
  const Problem p = make_problem(111);
  const Box whole = whole_box(p.fixed);
  Volume<float> out(p.fixed), gu(p.fixed, 3);
  WarpInputs in = inputs(p, Interpolation::Nearest, Boundary::Zero);
  WarpGradients grads;
  grads.displacement = gu.view();
  EXPECT_THROW(warp_backward(kCpu, in, p.weights.view(), whole, grads), Error);  // not linear
  in.interpolation = Interpolation::Linear;
  EXPECT_THROW(warp(kCpu, in, gu.view(), whole), Error);  // 3-component output
  const Box too_big{{0, 0, 0}, {p.fixed.size.x + 1, p.fixed.size.y, p.fixed.size.z}};
  EXPECT_THROW(warp(kCpu, in, out.view(), too_big), Error);
  const Volume<float> u_part = copy_box(p.u, Box{{0, 0, 0}, {p.fixed.size.x, p.fixed.size.y, 4}});
  in.displacement = u_part.view();
  EXPECT_THROW(warp(kCpu, in, out.view(), whole), Error);  // u does not contain owned
  in = inputs(p, Interpolation::Linear, Boundary::Zero);
  std::vector<double> pa(5 * kAffineTerms);
  grads = {};
  grads.affine = {pa.data(), 5, kAffineTerms};
  EXPECT_THROW(warp_backward(kCpu, in, p.weights.view(), whole, grads), Error);  // wrong slices
  try {
    warp(Context::cuda(), in, out.view(), whole);
    ADD_FAILURE() << "host memory accepted by the cuda backend";
  } catch (const Error& e) {
    EXPECT_EQ(e.where(), "warp");
  }
}

// The loss gradient may live in the first component plane of dL/du (the registration keeps no
// separate volume for it): each voxel's dL/dW is read before its dL/du is written.
TEST(Warp, BackwardWithTheLossGradientInTheFirstPlaneOfTheOutput) {
  const Problem p = make_problem(91);
  const Box whole = whole_box(p.fixed);
  const WarpInputs in = inputs(p, Interpolation::Linear, Boundary::Zero);
  Volume<float> separate(p.fixed, 3);
  std::vector<double> pa_ref(std::size_t(p.fixed.size.z) * kAffineTerms);
  warp_backward(kCpu, in, p.weights.view(), whole,
                {separate.view(), {pa_ref.data(), p.fixed.size.z, kAffineTerms}, {}});
  Volume<float> shared(p.fixed, 3);
  VolumeView<float> first_plane = shared.view();
  first_plane.components = 1;
  for (index_t e = 0; e < p.weights.element_count(); ++e) shared.data()[e] = p.weights.data()[e];
  std::vector<double> pa(pa_ref.size());
  warp_backward(kCpu, in, first_plane, whole,
                {shared.view(), {pa.data(), p.fixed.size.z, kAffineTerms}, {}});
  EXPECT_TRUE(bitwise_equal(separate, shared, whole));
  EXPECT_EQ(std::memcmp(pa.data(), pa_ref.data(), pa.size() * sizeof(double)), 0);
}

// Displacement-field ops on the CPU reference backend: composition (with and without an affine)
// and resampling against a double-precision oracle, scaling and squaring against composition and
// a flow integration, fixed-point inversion residuals, Jacobian determinants of linear and random
// fields, z-slab stitching and determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

const Context kCpu = Context::cpu();

Vec3d center_of(const Geometry& g) {
  return g.index_to_physical(
      {0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
}

Affined mild_affine(const Geometry& g) {
  const Mat3d l = rotation(0.04, 0.07, -0.09) * Mat3d{{1.03, 0.02, 0.0, -0.01, 0.98, 0.03, 0.0, 0.01, 1.01}};
  const Vec3d c = center_of(g);
  return {l, c - l * c + Vec3d{0.6, -0.3, 0.45}};
}

double norm(Vec3d a) { return std::sqrt(dot(a, a)); }

/// w(x) = A(x + v) + u(A(x + v)) - x in double.
Vec3d ref_compose(const Volume<float>* v, const Geometry& grid, const Affined& a,
                  const Volume<float>& u, const Geometry& u_grid, index_t i, index_t j, index_t k,
                  Boundary b) {
  const Vec3d x = grid.index_to_physical(index3d(i, j, k));
  const Vec3d y = a(v ? x + vec_at(*v, i, j, k) : x);
  return y + ref_trilinear3(u, u_grid.physical_to_index(y), b == Boundary::Zero) - x;
}

double max_diff_to_ref(const Volume<float>& w, const Box& box,
                       const std::function<Vec3d(index_t, index_t, index_t)>& ref) {
  double worst = 0;
  for (index_t k = box.lo.z; k < box.hi().z; ++k)
    for (index_t j = box.lo.y; j < box.hi().y; ++j)
      for (index_t i = box.lo.x; i < box.hi().x; ++i) {
        const Vec3d r = ref(i, j, k);
        for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(double(w(i, j, k, c)) - r[c]));
      }
  return worst;
}

Volume<float> scaled(const Volume<float>& v, float s) {
  Volume<float> r = v.clone();
  for (index_t e = 0; e < r.element_count(); ++e) r.data()[e] *= s;
  return r;
}

Volume<float> run_exp(const Volume<float>& v, int steps) {
  Volume<float> out(v.geometry(), 3);
  exp_field(kCpu, v.view(), v.geometry(), steps, out.view());
  return out;
}

/// Jacobian determinant in double with the documented differences.
double ref_jacobian(const Volume<float>& u, index_t i, index_t j, index_t k) {
  const Geometry& g = u.geometry();
  Mat3d du{};
  const index_t idx[3] = {i, j, k};
  for (int a = 0; a < 3; ++a) {
    const index_t n = g.size[a];
    Vec3d d{0, 0, 0};
    if (n >= 2) {
      index_t lo[3] = {i, j, k}, hi[3] = {i, j, k};
      double s = 1;
      if (idx[a] == 0) hi[a] += 1;
      else if (idx[a] == n - 1) lo[a] -= 1;
      else {
        lo[a] -= 1;
        hi[a] += 1;
        s = 0.5;
      }
      d = s * (vec_at(u, hi[0], hi[1], hi[2]) - vec_at(u, lo[0], lo[1], lo[2]));
    }
    for (int c = 0; c < 3; ++c) du(c, a) = d[c];
  }
  Mat3d jac = du * g.physical_to_index_map().matrix;
  for (int a = 0; a < 3; ++a) jac(a, a) += 1;
  return determinant(jac);
}

}  // namespace

// compose_fields against the double oracle: identity and general affine, fields on different
// grids, both boundary rules.
TEST(Field, ComposeMatchesDoubleReference) {
  const Geometry grid = oblique_geometry({22, 19, 16});
  const Geometry u_grid = centered_like(grid, {18, 21, 15}, {1.2, 1.0, 1.5}, rotation(0.1, -0.2, 0.15));
  const Volume<float> v = random_smooth_field(grid, 1, 2.0), u = random_smooth_field(u_grid, 2, 2.5);
  const Box whole = whole_box(grid);
  for (Boundary b : {Boundary::Zero, Boundary::Border})
    for (bool with_affine : {false, true}) {
      const Affined a = with_affine ? mild_affine(grid) : Affined::identity();
      Volume<float> w(grid, 3);
      compose_fields(kCpu, v.view(), grid, a, u.view(), u_grid, w.view(), whole, b);
      const double err = max_diff_to_ref(w, whole, [&](index_t i, index_t j, index_t k) {
        return ref_compose(&v, grid, a, u, u_grid, i, j, k, b);
      });
      EXPECT_LT(err, 2e-5) << "boundary " << int(b) << " affine " << with_affine;
      if (!with_affine) {
        Volume<float> w2(grid, 3);
        compose_fields(kCpu, v.view(), grid, u.view(), u_grid, w2.view(), whole, b);
        EXPECT_TRUE(bitwise_equal(w, w2, whole)) << "the overload without affine is the identity";
      }
    }
}

// Exact cases: v o 0 = v, 0 o u = u on the same grid (samples at the grid points), and the
// output may alias v.
TEST(Field, ComposeExactCases) {
  const Geometry grid = oblique_geometry({14, 12, 10});
  const Volume<float> v = random_smooth_field(grid, 3, 2.0), u = random_smooth_field(grid, 4, 2.0);
  Volume<float> zero(grid, 3);
  zero.fill(0.f);
  const Box whole = whole_box(grid);
  Volume<float> w(grid, 3);
  compose_fields(kCpu, v.view(), grid, zero.view(), grid, w.view(), whole);
  EXPECT_TRUE(bitwise_equal(w, v, whole));
  compose_fields(kCpu, {}, grid, u.view(), grid, w.view(), whole);
  EXPECT_TRUE(bitwise_equal(w, u, whole));
  compose_fields(kCpu, zero.view(), grid, u.view(), grid, w.view(), whole);
  EXPECT_TRUE(bitwise_equal(w, u, whole));
  // In place: out is v.
  Volume<float> ref(grid, 3), inplace = v.clone();
  compose_fields(kCpu, v.view(), grid, u.view(), grid, ref.view(), whole);
  compose_fields(kCpu, inplace.view(), grid, u.view(), grid, inplace.view(), whole);
  EXPECT_TRUE(bitwise_equal(ref, inplace, whole));
}

// resample_field: the same grid gives the field bitwise; a field linear in physical space is
// reproduced on a finer grid wherever the sample stays inside the source grid; a random field
// matches the double oracle.
TEST(Field, ResampleField) {
  const Geometry coarse = oblique_geometry({12, 10, 9});
  const Geometry fine = resized_geometry(coarse, {23, 19, 17});
  const Volume<float> r = random_smooth_field(coarse, 5, 3.0);
  Volume<float> same(coarse, 3);
  resample_field(kCpu, r.view(), coarse, coarse, same.view(), whole_box(coarse));
  EXPECT_TRUE(bitwise_equal(same, r, whole_box(coarse)));

  const Mat3d b{{0.05, -0.02, 0.01, 0.03, -0.04, 0.02, -0.01, 0.02, 0.06}};
  const Vec3d c = center_of(coarse);
  Volume<float> lin(coarse, 3);
  for (index_t k = 0; k < coarse.size.z; ++k)
    for (index_t j = 0; j < coarse.size.y; ++j)
      for (index_t i = 0; i < coarse.size.x; ++i) {
        const Vec3d d = b * (coarse.index_to_physical(index3d(i, j, k)) - c) + Vec3d{0.5, -1.0, 0.25};
        for (int a = 0; a < 3; ++a) lin(i, j, k, a) = float(d[a]);
      }
  Volume<float> up(fine, 3);
  resample_field(kCpu, lin.view(), coarse, fine, up.view(), whole_box(fine));
  double worst = 0;
  index_t inside = 0;
  for (index_t k = 0; k < fine.size.z; ++k)
    for (index_t j = 0; j < fine.size.y; ++j)
      for (index_t i = 0; i < fine.size.x; ++i) {
        const Vec3d x = fine.index_to_physical(index3d(i, j, k));
        const Vec3d m = coarse.physical_to_index(x);
        bool in = true;
        for (int a = 0; a < 3; ++a) in = in && m[a] >= 0 && m[a] <= coarse.size[a] - 1;
        if (!in) continue;
        ++inside;
        const Vec3d d = b * (x - c) + Vec3d{0.5, -1.0, 0.25};
        for (int a = 0; a < 3; ++a) worst = std::max(worst, std::abs(up(i, j, k, a) - d[a]));
      }
  EXPECT_GT(inside, fine.voxel_count() / 2);
  EXPECT_LT(worst, 1e-5);

  Volume<float> up_r(fine, 3);
  resample_field(kCpu, r.view(), coarse, fine, up_r.view(), whole_box(fine));
  const double err = max_diff_to_ref(up_r, whole_box(fine), [&](index_t i, index_t j, index_t k) {
    return ref_trilinear3(r, coarse.physical_to_index(fine.index_to_physical(index3d(i, j, k))), false);
  });
  EXPECT_LT(err, 1e-5);
}

// Scaling and squaring: exp(v) with N steps is bitwise the self-composition of exp(v/2) with
// N-1 steps; a constant field is its own exponential.
TEST(Field, ExpIsSelfCompositionOfHalf) {
  const Geometry grid = oblique_geometry({16, 14, 12});
  const Volume<float> v = random_smooth_field(grid, 6, 3.0);
  const Volume<float> e = run_exp(v, 6);
  const Volume<float> half = run_exp(scaled(v, 0.5f), 5);
  Volume<float> sq(grid, 3);
  compose_fields(kCpu, half.view(), grid, half.view(), grid, sq.view(), whole_box(grid));
  EXPECT_TRUE(bitwise_equal(e, sq, whole_box(grid)));
  EXPECT_TRUE(bitwise_equal(run_exp(v, 0), v, whole_box(grid)));

  Volume<float> cst(grid, 3);
  for (int c = 0; c < 3; ++c)
    for (index_t n = 0; n < grid.voxel_count(); ++n) cst.data()[c * grid.voxel_count() + n] = float(0.7 - 0.4 * c);
  EXPECT_LT(max_abs_diff(run_exp(cst, 7), cst, whole_box(grid)), 1e-6);

  // out may alias v
  Volume<float> inplace = v.clone();
  exp_field(kCpu, inplace.view(), grid, 6, inplace.view());
  EXPECT_TRUE(bitwise_equal(inplace, e, whole_box(grid)));
}

// exp(v) of a small stationary field against the flow of v integrated in double (RK4, 64 steps,
// the same trilinear interpolant and Border rule), and exp(-v) o exp(v) ~ 0.
TEST(Field, ExpMatchesFlowAndInverts) {
  const Geometry grid = make_geometry({20, 18, 16}, {1.0, 1.2, 0.9}, {3, -4, 5}, rotation(0.2, 0.1, -0.3));
  const Volume<float> v = random_smooth_field(grid, 7, 1.0, 0.6);
  const Volume<float> e = run_exp(v, 8);
  const int steps = 64;
  const double dt = 1.0 / steps;
  auto vel = [&](Vec3d x) { return ref_trilinear3(v, grid.physical_to_index(x), false); };
  double worst = 0, vmax = 0;
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        const Vec3d x0 = grid.index_to_physical(index3d(i, j, k));
        Vec3d x = x0;
        for (int s = 0; s < steps; ++s) {
          const Vec3d k1 = vel(x), k2 = vel(x + (0.5 * dt) * k1), k3 = vel(x + (0.5 * dt) * k2),
                      k4 = vel(x + dt * k3);
          x = x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4);
        }
        const Vec3d d = x - x0;
        for (int c = 0; c < 3; ++c) worst = std::max(worst, std::abs(e(i, j, k, c) - d[c]));
        vmax = std::max(vmax, norm(vec_at(v, i, j, k)));
      }
  EXPECT_GT(vmax, 0.5);
  EXPECT_LT(worst, 0.02 * vmax) << "worst " << worst;

  const Volume<float> e_neg = run_exp(scaled(v, -1.f), 8);
  Volume<float> id(grid, 3);
  compose_fields(kCpu, e_neg.view(), grid, e.view(), grid, id.view(), whole_box(grid));
  const Box interior{{3, 3, 3}, {grid.size.x - 6, grid.size.y - 6, grid.size.z - 6}};
  EXPECT_LT(max_abs(id, interior), 0.02 * vmax);
}

// invert_field: the reported residual is at most the tolerance and agrees with a double
// recomputation of |w + u(x + w)|; in the interior the inverse is also a right inverse.
TEST(Field, InverseResidualIsSmall) {
  const Geometry grid = oblique_geometry({22, 20, 18});
  const Volume<float> u = random_smooth_field(grid, 8, 1.5, 0.6);
  Volume<float> w(grid, 3);
  std::vector<double> res(std::size_t(grid.size.z) * 2, -1);
  InverseOptions opt;
  opt.iterations = 50;
  opt.tolerance = 1e-4;
  invert_field(kCpu, u.view(), grid, grid, w.view(), whole_box(grid), opt, {},
               {res.data(), grid.size.z, 2});
  const double reported = max_over_slices(kCpu, {res.data(), grid.size.z, 2}, 0);
  const double not_converged = reduce_slices(kCpu, {res.data(), grid.size.z, 2})[1];
  EXPECT_LE(reported, opt.tolerance);
  EXPECT_EQ(not_converged, 0.0);
  double recomputed = 0, right = 0;
  const Box interior{{4, 4, 4}, {grid.size.x - 8, grid.size.y - 8, grid.size.z - 8}};
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        const Vec3d x = grid.index_to_physical(index3d(i, j, k));
        const Vec3d wi = vec_at(w, i, j, k);
        recomputed = std::max(recomputed, norm(wi + ref_trilinear3(u, grid.physical_to_index(x + wi), false)));
        if (interior.contains(i, j, k)) {
          const Vec3d ui = vec_at(u, i, j, k);
          right = std::max(right, norm(ui + ref_trilinear3(w, grid.physical_to_index(x + ui), false)));
        }
      }
  EXPECT_LE(recomputed, opt.tolerance + 1e-5);
  EXPECT_NEAR(recomputed, reported, 1e-5);
  EXPECT_LT(right, 0.05) << "u o w and w o u differ by the interpolation error only";
  EXPECT_GT(max_abs(w, whole_box(grid)), 1.0);
}

namespace {

template <class F>
void for_each_voxel(const Geometry& g, F f) {
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) f(i, j, k);
}

/// A smooth field that vanishes on and near the grid's boundary (a taper of `margin` voxels),
/// as SyN's half-way fields do.
Volume<float> tapered_field(const Geometry& grid, std::uint64_t seed, double max_mm, double margin) {
  Volume<float> u = random_smooth_field(grid, seed, max_mm, 0.6);
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) {
        double t = 1;
        const index_t idx[3] = {i, j, k};
        for (int a = 0; a < 3; ++a) {
          const double d = double(std::min(idx[a], grid.size[a] - 1 - idx[a]));
          t *= std::min(1.0, d / margin);
        }
        for (int c = 0; c < 3; ++c) u(i, j, k, c) = float(t * u(i, j, k, c));
      }
  return u;
}

/// max over `box` of |u(x) + w(x + u(x))| in double (w: zero displacement outside its grid).
double consistency(const Volume<float>& u, const Volume<float>& w, const Geometry& grid, const Box& box) {
  double worst = 0;
  for (index_t k = box.lo.z; k < box.hi().z; ++k)
    for (index_t j = box.lo.y; j < box.hi().y; ++j)
      for (index_t i = box.lo.x; i < box.hi().x; ++i) {
        const Vec3d x = grid.index_to_physical(index3d(i, j, k));
        const Vec3d ui = vec_at(u, i, j, k);
        worst = std::max(worst, norm(ui + ref_trilinear3(w, grid.physical_to_index(x + ui), false)));
      }
  return worst;
}

}  // namespace

// ITK's damped inversion: the first update from w = 0 is w = -0.75 clip(u), clip at 0.75 of the
// largest |u| in voxels (e = w + u(x + w) = u(x)), the boundary layer 0; checked in double.
TEST(Field, DampedInverseFirstUpdateMatchesFormula) {
  const Geometry grid = make_geometry({14, 12, 10}, {1.0, 1.5, 2.0}, {3, -4, 5}, rotation(0.2, 0.1, -0.3));
  const Volume<float> u = random_smooth_field(grid, 21, 2.0);
  Volume<float> w(grid, 3);
  std::memset(w.data(), 0, w.bytes());
  DampedInverseOptions opt;
  opt.iterations = 1;
  const DampedInverseReport r = invert_field_damped(kCpu, u.view(), grid, w.view(), opt);
  EXPECT_EQ(r.iterations, 1);
  const Mat3d to_index = grid.physical_to_index_map().matrix;
  double largest = 0, sum = 0;
  for_each_voxel(grid, [&](index_t i, index_t j, index_t k) {
    const double n = norm(to_index * vec_at(u, i, j, k));
    largest = std::max(largest, n);
    sum += n;
  });
  EXPECT_NEAR(r.max_error, largest, 1e-5 * largest);
  EXPECT_NEAR(r.mean_error, sum / double(grid.voxel_count()), 1e-5 * largest);
  double worst = 0;
  for_each_voxel(grid, [&](index_t i, index_t j, index_t k) {
    const Vec3d ui = vec_at(u, i, j, k);
    const double n = norm(to_index * ui), clip = 0.75 * largest;
    Vec3d expect = (-0.75 * (n > clip ? clip / n : 1.0)) * ui;
    const bool edge = i == 0 || j == 0 || k == 0 || i == grid.size.x - 1 || j == grid.size.y - 1 ||
                      k == grid.size.z - 1;
    if (edge) expect = Vec3d{0, 0, 0};
    worst = std::max(worst, norm(vec_at(w, i, j, k) - expect));
  });
  EXPECT_LT(worst, 1e-5);
}

// Where the map compresses by more than 2 (|du/dx| > 1) the per-voxel fixed point of invert_field
// diverges; the damped inversion converges there (the map is invertible: exp of a velocity).
// The residual it reports and w(x) + u(x + w(x)), recomputed in double, are checked.
TEST(Field, DampedInverseConvergesWhereFixedPointFails) {
  const Geometry grid = make_geometry({24, 22, 20}, {1.0, 1.0, 1.0}, {0, 0, 0}, rotation(0, 0, 0));
  const Volume<float> v = tapered_field(grid, 22, 6.0, 4.0);
  const Volume<float> u = run_exp(v, 8);  // a diffeomorphism with strong compression
  Volume<float> jac(grid, 1);
  jacobian_determinant(kCpu, u.view(), grid, jac.view(), whole_box(grid));
  float jmin = 1e9f;
  for (index_t e = 0; e < jac.element_count(); ++e) jmin = std::min(jmin, jac.data()[e]);
  EXPECT_GT(jmin, 0.f);
  EXPECT_LT(jmin, 0.35f) << "the test field must compress strongly";
  const Box interior{{2, 2, 2}, {grid.size.x - 4, grid.size.y - 4, grid.size.z - 4}};

  Volume<float> w_fp(grid, 3);
  InverseOptions fp;
  fp.iterations = 50;
  invert_field(kCpu, u.view(), grid, grid, w_fp.view(), whole_box(grid), fp);
  const double fixed_point = consistency(w_fp, u, grid, interior);  // |w + u(x + w)|

  Volume<float> w(grid, 3);
  std::memset(w.data(), 0, w.bytes());
  DampedInverseOptions opt;
  opt.iterations = 200;
  opt.mean_tolerance = 0;
  opt.max_tolerance = 1e-3;
  const DampedInverseReport r = invert_field_damped(kCpu, u.view(), grid, w.view(), opt);
  EXPECT_LE(r.max_error, 1e-3) << r.iterations << " updates";
  const double damped = consistency(w, u, grid, interior);
  EXPECT_LT(damped, 2e-3) << "fixed point: " << fixed_point;
  EXPECT_GT(fixed_point, 4 * damped);
}

// Warm start: an inverse given as the initial estimate stays (a few updates at most), and the
// result does not depend on the thread count (bitwise).
TEST(Field, DampedInverseWarmStartAndDeterminism) {
  const Geometry grid = oblique_geometry({18, 16, 14});
  const Volume<float> u = tapered_field(grid, 23, 2.0, 3.0);
  Volume<float> w(grid, 3);
  std::memset(w.data(), 0, w.bytes());
  DampedInverseOptions tight;
  tight.iterations = 100;
  tight.mean_tolerance = 0;
  tight.max_tolerance = 1e-4;
  invert_field_damped(kCpu, u.view(), grid, w.view(), tight);
  Volume<float> again = w.clone();
  const DampedInverseReport r = invert_field_damped(kCpu, u.view(), grid, again.view());
  EXPECT_EQ(r.iterations, 1);  // the default tolerances hold at once
  EXPECT_LT(r.max_error, 1e-3);

  auto run = [&](int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Volume<float> out(grid, 3);
    std::memset(out.data(), 0, out.bytes());
    invert_field_damped(kCpu, u.view(), grid, out.view());
    omp_set_num_threads(before);
    return out;
  };
  const Volume<float> a = run(1), b = run(3);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0);
}

TEST(Field, ZeroFieldBoundaryAndDampedInverseArguments) {
  const Geometry grid = oblique_geometry({9, 8, 7});
  const Volume<float> u = random_smooth_field(grid, 24, 1.0);
  Volume<float> z = u.clone();
  const Box part{{0, 2, 1}, {9, 4, 6}};
  zero_field_boundary(kCpu, z.view(), grid, part);
  for_each_voxel(grid, [&](index_t i, index_t j, index_t k) {
    const bool edge = i == 0 || j == 0 || k == 0 || i == 8 || j == 7 || k == 6;
    for (int c = 0; c < 3; ++c) {
      const float expect = part.contains(i, j, k) && edge ? 0.f : u(i, j, k, c);
      ASSERT_EQ(z(i, j, k, c), expect) << i << " " << j << " " << k;
    }
  });
  Volume<float> w(grid, 3);
  EXPECT_THROW(invert_field_damped(kCpu, u.view(), grid, VolumeView<float>{}), Error);
  Volume<float> same = u.clone();
  EXPECT_THROW(invert_field_damped(kCpu, same.view(), grid, same.view()), Error);
  DampedInverseOptions bad;
  bad.iterations = -1;
  EXPECT_THROW(invert_field_damped(kCpu, u.view(), grid, w.view(), bad), Error);
  bad = DampedInverseOptions{};
  bad.max_tolerance = -1;
  EXPECT_THROW(invert_field_damped(kCpu, u.view(), grid, w.view(), bad), Error);
}

// Zero iterations return the initial guess with its residual; a converged inverse as the initial
// guess is returned unchanged; inversion from a coarse u onto a fine grid converges too.
TEST(Field, InverseOptionsAndGrids) {
  const Geometry grid = oblique_geometry({16, 14, 12});
  const Volume<float> u = random_smooth_field(grid, 9, 1.2);
  const Box whole = whole_box(grid);
  std::vector<double> res(std::size_t(grid.size.z) * 2);
  const SlicePartials rp{res.data(), grid.size.z, 2};
  InverseOptions opt;
  opt.iterations = 0;
  Volume<float> w(grid, 3);
  invert_field(kCpu, u.view(), grid, grid, w.view(), whole, opt, {}, rp);
  Volume<float> zero(grid, 3);
  zero.fill(0.f);
  EXPECT_TRUE(bitwise_equal(w, zero, whole));
  double umax = 0;
  for (index_t k = 0; k < grid.size.z; ++k)
    for (index_t j = 0; j < grid.size.y; ++j)
      for (index_t i = 0; i < grid.size.x; ++i) umax = std::max(umax, norm(vec_at(u, i, j, k)));
  EXPECT_NEAR(max_over_slices(kCpu, rp, 0), umax, 1e-5);
  EXPECT_EQ(reduce_slices(kCpu, rp)[1], double(grid.voxel_count()));

  opt.iterations = 40;
  opt.tolerance = 1e-4;
  invert_field(kCpu, u.view(), grid, grid, w.view(), whole, opt);
  Volume<float> again(grid, 3);
  invert_field(kCpu, u.view(), grid, grid, again.view(), whole, opt, w.view(), rp);
  EXPECT_TRUE(bitwise_equal(w, again, whole)) << "a converged guess is a fixed point";
  EXPECT_LE(max_over_slices(kCpu, rp, 0), 1e-4);

  const Geometry fine = resized_geometry(grid, {25, 22, 19});
  Volume<float> wf(fine, 3);
  std::vector<double> resf(std::size_t(fine.size.z) * 2);
  invert_field(kCpu, u.view(), grid, fine, wf.view(), whole_box(fine), opt, {},
               {resf.data(), fine.size.z, 2});
  EXPECT_LE(max_over_slices(kCpu, {resf.data(), fine.size.z, 2}, 0), 1e-4);
}

// The Jacobian of x -> B (x - c) + d (u = (B - I)(x - c) + d - c... linear) is det(B) at every
// voxel, edges included, on an oblique anisotropic grid; a reflection counts every voxel.
TEST(Field, JacobianOfLinearFieldIsDeterminant) {
  const Geometry grid = oblique_geometry({13, 11, 9});
  const Vec3d c = center_of(grid);
  for (const Mat3d& b : {Mat3d{{1.1, 0.2, -0.1, 0.05, 0.9, 0.15, -0.2, 0.1, 1.3}},
                         Mat3d{{-1.0, 0.1, 0.0, 0.0, 1.2, 0.1, 0.1, 0.0, 0.8}}}) {
    Volume<float> u(grid, 3);
    for (index_t k = 0; k < grid.size.z; ++k)
      for (index_t j = 0; j < grid.size.y; ++j)
        for (index_t i = 0; i < grid.size.x; ++i) {
          const Vec3d x = grid.index_to_physical(index3d(i, j, k));
          const Vec3d d = b * (x - c) - (x - c) + Vec3d{0.3, -0.2, 0.1};
          for (int a = 0; a < 3; ++a) u(i, j, k, a) = float(d[a]);
        }
    Volume<float> det(grid);
    std::vector<double> np(std::size_t(grid.size.z));
    jacobian_determinant(kCpu, u.view(), grid, det.view(), whole_box(grid), {np.data(), grid.size.z, 1});
    const double expect = determinant(b);
    double worst = 0;
    for (index_t n = 0; n < grid.voxel_count(); ++n)
      worst = std::max(worst, std::abs(det.data()[n] - expect));
    EXPECT_LT(worst, 2e-5 * std::abs(expect)) << "det(B) = " << expect;
    EXPECT_EQ(reduce_slices(kCpu, {np.data(), grid.size.z, 1})[0],
              expect > 0 ? 0.0 : double(grid.voxel_count()));
  }
}

// Random folding fields against the double oracle (edges one-sided, an axis of size 1), and the
// count partial against the determinant output.
TEST(Field, JacobianMatchesDoubleReference) {
  for (const Geometry& grid : {oblique_geometry({15, 13, 11}), oblique_geometry({12, 10, 1})}) {
    const Volume<float> u = random_smooth_field(grid, 10, 6.0);
    Volume<float> det(grid);
    std::vector<double> np(std::size_t(grid.size.z));
    jacobian_determinant(kCpu, u.view(), grid, det.view(), whole_box(grid), {np.data(), grid.size.z, 1});
    double worst = 0, count = 0;
    for (index_t k = 0; k < grid.size.z; ++k)
      for (index_t j = 0; j < grid.size.y; ++j)
        for (index_t i = 0; i < grid.size.x; ++i) {
          worst = std::max(worst, std::abs(det(i, j, k) - ref_jacobian(u, i, j, k)));
          count += det(i, j, k) > 0 ? 0 : 1;
        }
    EXPECT_LT(worst, 2e-5);
    EXPECT_EQ(reduce_slices(kCpu, {np.data(), grid.size.z, 1})[0], count);
    if (grid.size.z > 1) {
      EXPECT_GT(count, 0) << "the field should fold somewhere";
    }
  }
}

// Each field op on 3 z-slabs with its halo (compose/resample/invert: pointwise inputs cut to the
// slab, u whole; Jacobian: u cut to the slab + 1), stitched: bitwise the whole-volume result,
// slice partials included.
TEST(Field, SlabsStitchBitwise) {
  const Geometry grid = oblique_geometry({18, 16, 15});
  const Geometry u_grid = centered_like(grid, {15, 17, 13}, {1.3, 1.0, 1.7}, rotation(0.1, 0.0, -0.2));
  const Volume<float> v = random_smooth_field(grid, 11, 2.0), u = random_smooth_field(u_grid, 12, 1.5);
  const Volume<float> u_same = random_smooth_field(grid, 13, 4.0);
  const Box whole = whole_box(grid);
  const Affined a = mild_affine(grid);
  InverseOptions opt;
  opt.iterations = 15;
  opt.tolerance = 1e-3;

  Volume<float> comp(grid, 3), res(grid, 3), inv(grid, 3), det(grid);
  std::vector<double> inv_p(std::size_t(grid.size.z) * 2), det_p(std::size_t(grid.size.z));
  compose_fields(kCpu, v.view(), grid, a, u.view(), u_grid, comp.view(), whole);
  resample_field(kCpu, u.view(), u_grid, grid, res.view(), whole);
  invert_field(kCpu, u.view(), u_grid, grid, inv.view(), whole, opt, v.view(),
               {inv_p.data(), grid.size.z, 2});
  jacobian_determinant(kCpu, u_same.view(), grid, det.view(), whole, {det_p.data(), grid.size.z, 1});

  Volume<float> comp_s(grid, 3), res_s(grid, 3), inv_s(grid, 3), det_s(grid);
  std::vector<double> inv_ps, det_ps;
  for (const Box& s : z_slabs(grid.size, 3)) {
    const Volume<float> v_slab = copy_box(v, s);
    Volume<float> o(grid, s, 3), d(grid, s, 1);
    compose_fields(kCpu, v_slab.view(), grid, a, u.view(), u_grid, o.view(), s);
    paste_box(comp_s, o, s);
    resample_field(kCpu, u.view(), u_grid, grid, o.view(), s);
    paste_box(res_s, o, s);
    std::vector<double> ip(std::size_t(s.size.z) * 2), dp(std::size_t(s.size.z));
    invert_field(kCpu, u.view(), u_grid, grid, o.view(), s, opt, v_slab.view(), {ip.data(), s.size.z, 2});
    paste_box(inv_s, o, s);
    const Volume<float> u_halo = copy_box(u_same, grow_box(s, 1, grid.size));
    jacobian_determinant(kCpu, u_halo.view(), grid, d.view(), s, {dp.data(), s.size.z, 1});
    paste_box(det_s, d, s);
    inv_ps.insert(inv_ps.end(), ip.begin(), ip.end());
    det_ps.insert(det_ps.end(), dp.begin(), dp.end());
  }
  EXPECT_TRUE(bitwise_equal(comp, comp_s, whole));
  EXPECT_TRUE(bitwise_equal(res, res_s, whole));
  EXPECT_TRUE(bitwise_equal(inv, inv_s, whole));
  EXPECT_TRUE(bitwise_equal(det, det_s, whole));
  EXPECT_EQ(std::memcmp(inv_p.data(), inv_ps.data(), inv_p.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(det_p.data(), det_ps.data(), det_p.size() * sizeof(double)), 0);
}

// Runs with 2 threads twice and with 1 thread are bitwise equal.
TEST(Field, DeterministicAcrossRunsAndThreadCounts) {
  const Geometry grid = oblique_geometry({17, 15, 13});
  const Volume<float> v = random_smooth_field(grid, 14, 2.0), u = random_smooth_field(grid, 15, 1.5);
  const Box whole = whole_box(grid);
  struct Result {
    Volume<float> comp, e, inv, det;
    std::vector<double> ip, dp;
  };
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Result r{Volume<float>(grid, 3), Volume<float>(grid, 3), Volume<float>(grid, 3), Volume<float>(grid), {}, {}};
    r.ip.resize(std::size_t(grid.size.z) * 2);
    r.dp.resize(std::size_t(grid.size.z));
    compose_fields(kCpu, v.view(), grid, mild_affine(grid), u.view(), grid, r.comp.view(), whole);
    exp_field(kCpu, v.view(), grid, 5, r.e.view());
    invert_field(kCpu, u.view(), grid, grid, r.inv.view(), whole, {}, {}, {r.ip.data(), grid.size.z, 2});
    jacobian_determinant(kCpu, r.e.view(), grid, r.det.view(), whole, {r.dp.data(), grid.size.z, 1});
    return r;
  };
  const int saved = omp_get_max_threads();
  const Result a = run(2), b = run(2), c = run(1);
  omp_set_num_threads(saved);
  for (const Result* r : {&b, &c}) {
    EXPECT_TRUE(bitwise_equal(a.comp, r->comp, whole));
    EXPECT_TRUE(bitwise_equal(a.e, r->e, whole));
    EXPECT_TRUE(bitwise_equal(a.inv, r->inv, whole));
    EXPECT_TRUE(bitwise_equal(a.det, r->det, whole));
    EXPECT_EQ(std::memcmp(a.ip.data(), r->ip.data(), a.ip.size() * sizeof(double)), 0);
    EXPECT_EQ(std::memcmp(a.dp.data(), r->dp.data(), a.dp.size() * sizeof(double)), 0);
  }
}

// Each op writes exactly its owned box of a larger output.
TEST(Field, WritesOnlyOwnedBox) {
  const Geometry grid = oblique_geometry({16, 14, 12});
  const Volume<float> v = random_smooth_field(grid, 16, 2.0), u = random_smooth_field(grid, 17, 1.5);
  const Box owned{{2, 3, 1}, {11, 9, 8}};
  Volume<float> a(grid, 3), b(grid, 3), c(grid, 3), d(grid);
  for (Volume<float>* x : {&a, &b, &c, &d}) poison(*x);
  compose_fields(kCpu, v.view(), grid, u.view(), grid, a.view(), owned);
  resample_field(kCpu, u.view(), grid, grid, b.view(), owned);
  invert_field(kCpu, u.view(), grid, grid, c.view(), owned);
  jacobian_determinant(kCpu, u.view(), grid, d.view(), owned);
  for (const Volume<float>* x : {&a, &b, &c, &d}) {
    const PoisonCheck pc = check_written(*x, owned);
    EXPECT_EQ(pc.unwritten_inside, 0);
    EXPECT_EQ(pc.touched_outside, 0);
  }
}

TEST(Field, RejectsBadArguments) {
  const Geometry grid = oblique_geometry({12, 10, 9});
  const Volume<float> u = random_smooth_field(grid, 18, 1.0);
  Volume<float> out(grid, 3), det(grid), u_copy = u.clone();
  const Box whole = whole_box(grid);
  const Box slab{{0, 0, 3}, {12, 10, 3}};
  const Volume<float> u_slab = copy_box(u, slab);
  EXPECT_THROW(jacobian_determinant(kCpu, u_slab.view(), grid, det.view(), slab), Error);  // no halo
  EXPECT_THROW(exp_field(kCpu, u_slab.view(), grid, 4, out.view()), Error);  // not the whole grid
  EXPECT_THROW(exp_field(kCpu, u.view(), grid, 31, out.view()), Error);
  EXPECT_THROW(compose_fields(kCpu, u.view(), grid, u_copy.view(), grid, u_copy.view(), whole), Error);
  EXPECT_THROW(invert_field(kCpu, u_copy.view(), grid, grid, u_copy.view(), whole), Error);
  EXPECT_THROW(compose_fields(kCpu, u.view(), grid, u.view(), grid, det.view(), whole), Error);
  std::vector<double> p(3);
  EXPECT_THROW(invert_field(kCpu, u.view(), grid, grid, out.view(), whole, {}, {}, {p.data(), 3, 2}), Error);
  EXPECT_THROW(jacobian_determinant(kCpu, u.view(), grid, {}, whole), Error);
}

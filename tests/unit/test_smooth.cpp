// Gaussian smoothing, CPU reference: the taps, a delta's response against the sampled Gaussian
// in double, constants and ramps, the separable passes against a naive 3-D convolution in
// double, sigma in mm on anisotropic spacing, slab-and-stitch (bitwise), determinism, that only
// the owned voxels are written, and in-place smoothing (bitwise the out-of-place result, for
// every pass plan and chunking, on whole volumes and on slabs with halos).
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/volume.hpp"
#include "ops/smooth_plan.hpp"

using namespace gigareg;

namespace {

const Context kCpu = Context::cpu();

Geometry grid(Index3 size, Vec3d spacing = {1, 1, 1}) {
  Geometry g;
  g.size = size;
  g.spacing = spacing;
  g.origin = {-3.5, 7.25, 1.0};
  return g;
}

void fill_random(Volume<float>& v, unsigned seed, float lo = 0.5f, float hi = 1.5f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (index_t e = 0; e < v.element_count(); ++e) v.data()[e] = d(rng);
}

/// A copy of `box` of a whole-grid volume (all components): a shard with its halo.
Volume<float> crop(const Volume<float>& whole, const Box& box) {
  Volume<float> out(whole.geometry(), box, whole.components());
  for (int c = 0; c < whole.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) out(i, j, k, c) = whole(i, j, k, c);
  return out;
}

Box whole_box(const Geometry& g) { return Box{{0, 0, 0}, g.size}; }

/// The normalised sampled Gaussian in double, w[k + r] for k = -r..r.
std::vector<double> taps_double(double sigma, double truncation = 3.0) {
  const int r = int(std::ceil(truncation * sigma));
  std::vector<double> w(std::size_t(2 * r + 1));
  double sum = 0.0;
  for (int k = -r; k <= r; ++k) {
    w[std::size_t(k + r)] = sigma > 0 ? std::exp(-0.5 * k * k / (sigma * sigma)) : 1.0;
    sum += w[std::size_t(k + r)];
  }
  for (double& x : w) x /= sum;
  return w;
}

index_t clampi(index_t i, index_t n) { return i < 0 ? 0 : (i >= n ? n - 1 : i); }

bool bitwise_equal_on(const Volume<float>& a, const Volume<float>& b, const Box& box) {
  for (int c = 0; c < a.components(); ++c)
    for (index_t k = box.lo.z; k < box.hi().z; ++k)
      for (index_t j = box.lo.y; j < box.hi().y; ++j)
        for (index_t i = box.lo.x; i < box.hi().x; ++i) {
          const float x = a(i, j, k, c), y = b(i, j, k, c);
          if (std::memcmp(&x, &y, sizeof x) != 0) return false;
        }
  return true;
}

}  // namespace

TEST(GaussianTaps, RadiusAndNormalisation) {
  EXPECT_EQ(gaussian_radius(0.0), 0);
  EXPECT_EQ(gaussian_radius(1.0), 3);
  EXPECT_EQ(gaussian_radius(1.2), 4);  // ceil(3.6)
  EXPECT_EQ(gaussian_radius(2.0, 2.5), 5);
  const GaussianTaps t = gaussian_taps(1.7);
  ASSERT_EQ(t.radius, 6);
  const std::vector<double> ref = taps_double(1.7);
  double sum = t.w[0];
  for (int k = 1; k <= t.radius; ++k) sum += 2.0 * t.w[k];
  EXPECT_NEAR(sum, 1.0, 1e-6);
  for (int k = 0; k <= t.radius; ++k)
    EXPECT_NEAR(t.w[k], ref[std::size_t(k + t.radius)], 1e-8) << "tap " << k;
  EXPECT_EQ(gaussian_taps(0.0).radius, 0);
  EXPECT_EQ(gaussian_taps(0.0).w[0], 1.0f);
  EXPECT_THROW(gaussian_radius(-1.0), Error);
  EXPECT_THROW(gaussian_radius(std::nan("")), Error);
  EXPECT_THROW(gaussian_radius(100.0), Error);  // radius 300 > kMaxGaussianRadius
}

TEST(GaussianSmooth, DeltaGivesSampledGaussian) {
  const Geometry g = grid({31, 29, 33});
  Volume<float> in(g), out(g);
  in.fill(0.0f);
  const Index3 c{15, 13, 16};
  in(c.x, c.y, c.z) = 1.0f;
  const Vec3d sigma{1.3, 0.8, 2.1};
  gaussian_smooth(kCpu, in.view(), out.view(), sigma, whole_box(g));
  const std::vector<double> wx = taps_double(sigma.x), wy = taps_double(sigma.y),
                            wz = taps_double(sigma.z);
  const int rx = int(wx.size() / 2), ry = int(wy.size() / 2), rz = int(wz.size() / 2);
  double max_rel = 0.0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const index_t dx = i - c.x, dy = j - c.y, dz = k - c.z;
        double expect = 0.0;
        if (std::abs(dx) <= rx && std::abs(dy) <= ry && std::abs(dz) <= rz)
          expect = wx[std::size_t(dx + rx)] * wy[std::size_t(dy + ry)] * wz[std::size_t(dz + rz)];
        const double got = out(i, j, k);
        if (expect == 0.0) {
          ASSERT_EQ(got, 0.0) << "outside the support at " << i << "," << j << "," << k;
        } else {
          max_rel = std::max(max_rel, std::abs(got - expect) / expect);
        }
      }
  EXPECT_LT(max_rel, 1e-6);
}

TEST(GaussianSmooth, PreservesConstantEverywhereAndRampInInterior) {
  const Geometry g = grid({24, 22, 20});
  Volume<float> in(g), out(g);
  in.fill(3.7f);
  const Vec3d sigma{1.5, 1.1, 1.9};
  gaussian_smooth(kCpu, in.view(), out.view(), sigma, whole_box(g));
  for (index_t e = 0; e < out.element_count(); ++e)
    ASSERT_NEAR(out.data()[e], 3.7f, 3.7f * 1e-6f) << "element " << e;  // replicate keeps constants

  auto ramp = [](index_t i, index_t j, index_t k) { return 0.5 + 0.1 * i - 0.05 * j + 0.2 * k; };
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) in(i, j, k) = float(ramp(i, j, k));
  gaussian_smooth(kCpu, in.view(), out.view(), sigma, whole_box(g));
  const Index3 r = gaussian_radii(sigma);
  double max_abs = 0.0;
  for (index_t k = r.z; k < g.size.z - r.z; ++k)
    for (index_t j = r.y; j < g.size.y - r.y; ++j)
      for (index_t i = r.x; i < g.size.x - r.x; ++i)
        max_abs = std::max(max_abs, std::abs(out(i, j, k) - ramp(i, j, k)));
  const double scale = ramp(g.size.x, 0, g.size.z);  // the largest |value|
  EXPECT_LT(max_abs, 8 * std::numeric_limits<float>::epsilon() * scale);
  // At the edge the replicated boundary bends the ramp: the test above must be an interior one.
  EXPECT_GT(std::abs(out(0, 10, 10) - ramp(0, 10, 10)), 1e-3);
}

TEST(GaussianSmooth, SeparablePassesEqualNaive3dConvolutionInDouble) {
  const Geometry g = grid({20, 18, 16});
  Volume<float> in(g), out(g);
  fill_random(in, 7, 1.0f, 2.0f);
  const Vec3d sigma{1.2, 0.7, 1.6};
  gaussian_smooth(kCpu, in.view(), out.view(), sigma, whole_box(g));
  const std::vector<double> wx = taps_double(sigma.x), wy = taps_double(sigma.y),
                            wz = taps_double(sigma.z);
  const int rx = int(wx.size() / 2), ry = int(wy.size() / 2), rz = int(wz.size() / 2);
  double max_rel = 0.0;
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        double s = 0.0;
        for (int dz = -rz; dz <= rz; ++dz)
          for (int dy = -ry; dy <= ry; ++dy)
            for (int dx = -rx; dx <= rx; ++dx)
              s += wx[std::size_t(dx + rx)] * wy[std::size_t(dy + ry)] * wz[std::size_t(dz + rz)] *
                   double(in(clampi(i + dx, g.size.x), clampi(j + dy, g.size.y),
                             clampi(k + dz, g.size.z)));
        max_rel = std::max(max_rel, std::abs(out(i, j, k) - s) / std::abs(s));
      }
  EXPECT_LT(max_rel, 1e-6);
}

TEST(GaussianSmooth, SigmaInMillimetresOnAnisotropicSpacing) {
  const Geometry g = grid({41, 31, 25}, {0.8, 1.6, 2.4});
  const Vec3d sv = sigma_mm_to_voxels(g, 2.4);
  EXPECT_DOUBLE_EQ(sv.x, 3.0);
  EXPECT_DOUBLE_EQ(sv.y, 1.5);
  EXPECT_DOUBLE_EQ(sv.z, 1.0);
  const Vec3d sv2 = sigma_mm_to_voxels(g, Vec3d{0.8, 3.2, 0.0});
  EXPECT_DOUBLE_EQ(sv2.x, 1.0);
  EXPECT_DOUBLE_EQ(sv2.y, 2.0);
  EXPECT_DOUBLE_EQ(sv2.z, 0.0);

  // A delta smoothed with an isotropic 2.4 mm sigma has (nearly) the same physical variance along
  // each axis, although the kernels are 3, 1.5 and 1 voxels wide.
  Volume<float> in(g), out(g);
  in.fill(0.0f);
  const Index3 c{20, 15, 12};
  in(c.x, c.y, c.z) = 1.0f;
  gaussian_smooth(kCpu, in.view(), out.view(), sv, whole_box(g));
  double var[3] = {0, 0, 0};
  for (index_t k = 0; k < g.size.z; ++k)
    for (index_t j = 0; j < g.size.y; ++j)
      for (index_t i = 0; i < g.size.x; ++i) {
        const double w = out(i, j, k);
        var[0] += w * std::pow((i - c.x) * g.spacing.x, 2);
        var[1] += w * std::pow((j - c.y) * g.spacing.y, 2);
        var[2] += w * std::pow((k - c.z) * g.spacing.z, 2);
      }
  for (int a = 0; a < 3; ++a) {
    // The exact variance of the truncated sampled kernel along the axis, in mm^2.
    const std::vector<double> w = taps_double(sv[a]);
    const int r = int(w.size() / 2);
    double expect = 0.0;
    for (int k = -r; k <= r; ++k) expect += w[std::size_t(k + r)] * k * k;
    expect *= g.spacing[a] * g.spacing[a];
    EXPECT_NEAR(var[a], expect, 1e-5 * expect) << "axis " << a;
    EXPECT_NEAR(var[a], 2.4 * 2.4, 0.05 * 2.4 * 2.4) << "axis " << a;
  }
}

TEST(GaussianSmooth, SigmaZeroCopiesAndZeroAxisIsIdentity) {
  const Geometry g = grid({13, 11, 9});
  Volume<float> in(g), out(g), ref(g);
  fill_random(in, 3);
  gaussian_smooth(kCpu, in.view(), out.view(), {0, 0, 0}, whole_box(g));
  EXPECT_EQ(std::memcmp(in.data(), out.data(), in.bytes()), 0);

  // sigma 0 along z: every z slice is smoothed on its own in x and y.
  gaussian_smooth(kCpu, in.view(), out.view(), {1.0, 0.9, 0.0}, whole_box(g));
  for (index_t k = 0; k < g.size.z; ++k) {
    Volume<float> slice(grid({13, 11, 1})), sm(grid({13, 11, 1}));
    for (index_t j = 0; j < 11; ++j)
      for (index_t i = 0; i < 13; ++i) slice(i, j, 0) = in(i, j, k);
    gaussian_smooth(kCpu, slice.view(), sm.view(), {1.0, 0.9, 0.0}, Box{{0, 0, 0}, {13, 11, 1}});
    for (index_t j = 0; j < 11; ++j)
      for (index_t i = 0; i < 13; ++i) ASSERT_EQ(out(i, j, k), sm(i, j, 0));
  }
}

namespace {

/// Smooths the whole volume, then each of `owned_boxes` from a crop of its input box, and
/// checks that each shard's output equals the whole run bitwise and that nothing outside the
/// owned box of the output view is written.
void check_stitch(const Volume<float>& in, Vec3d sigma, const std::vector<Box>& owned_boxes) {
  const Geometry& g = in.geometry();
  Volume<float> whole(g, in.components());
  gaussian_smooth(kCpu, in.view(), whole.view(), sigma, whole_box(g));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Box& owned : owned_boxes) {
    const Box in_box = smoothing_input_box(owned, g.size, sigma);
    const Volume<float> shard_in = crop(in, in_box);
    // The output view is the input box: wider than owned, so stray writes would show.
    Volume<float> shard_out(g, in_box, in.components());
    shard_out.fill(nan);
    gaussian_smooth(kCpu, shard_in.view(), shard_out.view(), sigma, owned);
    EXPECT_TRUE(bitwise_equal_on(shard_out, whole, owned))
        << "owned box at z " << owned.lo.z << " size " << owned.size.z;
    for (int c = 0; c < in.components(); ++c)
      for (index_t k = in_box.lo.z; k < in_box.hi().z; ++k)
        for (index_t j = in_box.lo.y; j < in_box.hi().y; ++j)
          for (index_t i = in_box.lo.x; i < in_box.hi().x; ++i)
            ASSERT_EQ(std::isnan(shard_out(i, j, k, c)), !owned.contains(i, j, k))
                << "voxel " << i << "," << j << "," << k << " component " << c;
  }
}

}  // namespace

TEST(GaussianSmooth, SlabsWithHalosStitchBitwiseScalar) {
  const Geometry g = grid({24, 20, 30});
  Volume<float> in(g);
  fill_random(in, 11);
  check_stitch(in, {1.1, 1.7, 2.3},
               {Box{{0, 0, 0}, {24, 20, 10}}, Box{{0, 0, 10}, {24, 20, 10}},
                Box{{0, 0, 20}, {24, 20, 10}}});
  // A 3-D block away from every edge (halos in x, y and z) and one at a corner.
  check_stitch(in, {1.1, 1.7, 2.3}, {Box{{5, 3, 10}, {10, 9, 7}}, Box{{14, 11, 25}, {10, 9, 5}}});
}

TEST(GaussianSmooth, SlabsWithHalosStitchBitwiseField) {
  const Geometry g = grid({18, 16, 27}, {1.0, 0.9, 1.3});
  Volume<float> in(g, 3);
  fill_random(in, 12, -2.0f, 2.0f);
  check_stitch(in, sigma_mm_to_voxels(g, 1.5),
               {Box{{0, 0, 0}, {18, 16, 9}}, Box{{0, 0, 9}, {18, 16, 9}},
                Box{{0, 0, 18}, {18, 16, 9}}});
}

TEST(GaussianSmooth, DeterministicAcrossRunsAndThreadCounts) {
  const Geometry g = grid({33, 17, 21});
  Volume<float> in(g, 3), a(g, 3), b(g, 3);
  fill_random(in, 5, -1.0f, 1.0f);
  const Vec3d sigma{2.2, 1.3, 0.6};
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  gaussian_smooth(kCpu, in.view(), a.view(), sigma, whole_box(g));
  omp_set_num_threads(std::max(2, threads));
  gaussian_smooth(kCpu, in.view(), b.view(), sigma, whole_box(g));
  omp_set_num_threads(threads);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.bytes()), 0);
}

TEST(GaussianSmooth, RejectsBadArguments) {
  const Geometry g = grid({16, 16, 16});
  Volume<float> in(g), out(g), field(g, 3);
  in.fill(1.0f);
  const Box owned{{0, 0, 4}, {16, 16, 8}};
  // Input view without the halo.
  const Volume<float> no_halo = crop(in, owned);
  EXPECT_THROW(gaussian_smooth(kCpu, no_halo.view(), out.view(), {1, 1, 1}, owned), Error);
  // ...but fine when the radius is 0 along z.
  EXPECT_NO_THROW(gaussian_smooth(kCpu, no_halo.view(), out.view(), {1, 1, 0}, owned));
  EXPECT_THROW(gaussian_smooth(kCpu, in.view(), field.view(), {1, 1, 1}, owned), Error);
  // In place needs the identical view; a shifted or cropped view of the same memory is refused.
  VolumeView<float> shifted = in.view();
  shifted.box_lo.z = 1;
  shifted.extent.z = 15;
  EXPECT_THROW(gaussian_smooth(kCpu, in.view(), shifted, {1, 1, 1}, owned), Error);
  EXPECT_THROW(gaussian_smooth(kCpu, in.view(), out.view(), {1, 1, 1}, Box{{0, 0, 10}, {16, 16, 8}}),
               Error);
  // Host memory with the CUDA backend (or a build without CUDA).
  EXPECT_THROW(gaussian_smooth(Context::cuda(), in.view(), out.view(), {1, 1, 1}, owned), Error);
}

namespace {

/// Smooths `in` on `owned` out of place (one chunk) and in place (a copy of `in`, chunks of
/// `chunk_voxels`): the owned voxels agree bitwise, the voxels outside `owned` keep their input.
void check_in_place(const Volume<float>& in, Vec3d sigma, const Box& owned, index_t chunk_voxels) {
  Volume<float> expected(in.geometry(), in.box(), in.components());
  expected.fill(std::numeric_limits<float>::quiet_NaN());
  gaussian_smooth_chunked(kCpu, in.view(), expected.view(), sigma, owned, 3.0, index_t(1) << 40);
  Volume<float> work = in.clone();
  gaussian_smooth_chunked(kCpu, work.view(), work.view(), sigma, owned, 3.0, chunk_voxels);
  EXPECT_TRUE(bitwise_equal_on(work, expected, owned))
      << "sigma " << sigma.x << "," << sigma.y << "," << sigma.z << " chunk " << chunk_voxels;
  for (int c = 0; c < in.components(); ++c)
    for (index_t k = in.box().lo.z; k < in.box().hi().z; ++k)
      for (index_t j = in.box().lo.y; j < in.box().hi().y; ++j)
        for (index_t i = in.box().lo.x; i < in.box().hi().x; ++i)
          if (!owned.contains(i, j, k)) {
            ASSERT_EQ(work(i, j, k, c), in(i, j, k, c)) << "halo voxel written: " << i << "," << j << "," << k;
          }
}

}  // namespace

TEST(GaussianSmoothInPlace, IsBitwiseTheOutOfPlaceResultForEveryPlanAndChunking) {
  const Geometry g = grid({23, 19, 29});
  Volume<float> in(g, 3);
  fill_random(in, 21, -2.0f, 2.0f);
  // Three passes, two (z and x; y and x), one (z alone: followed by a copy), none (identity),
  // and a z radius wider than the grid; chunks of one plane up to the whole volume.
  const Vec3d sigmas[] = {{1.1, 1.7, 2.3}, {1.5, 0, 0.7}, {0.8, 1.2, 0}, {0, 0, 1.9}, {0, 0, 0},
                          {0.9, 0.6, 12.0}};
  for (const Vec3d& sigma : sigmas)
    for (index_t chunk : {index_t(1), index_t(23 * 19 * 3), index_t(23 * 19 * 7), index_t(1) << 30})
      check_in_place(in, sigma, whole_box(g), chunk);
}

TEST(GaussianSmoothInPlace, SlabsWithHalosKeepTheHaloAndStitchBitwise) {
  const Geometry g = grid({20, 18, 36});
  Volume<float> whole(g, 3);
  fill_random(whole, 22, -1.0f, 1.0f);
  const Vec3d sigma{1.5, 1.5, 1.5};
  for (index_t z0 : {index_t(0), index_t(12), index_t(24)}) {
    const Box owned{{0, 0, z0}, {20, 18, 12}};
    const Volume<float> shard = crop(whole, smoothing_input_box(owned, g.size, sigma));
    for (index_t chunk : {index_t(1), index_t(20 * 18 * 4), index_t(1) << 30})
      check_in_place(shard, sigma, owned, chunk);
  }
}

TEST(GaussianSmooth, AdjointSatisfiesTheInnerProductIdentity) {
  // <G x, y> = <x, G^T y> (in double) for random x, y: anisotropic sigmas, an axis without
  // smoothing, a kernel wider than its axis (radius 9 on 5 voxels: most taps clamped onto the
  // edges), two components.
  struct Case {
    Index3 size;
    Vec3d sigma;
  } cases[] = {{{7, 5, 9}, {1.0, 3.0, 0.0}}, {{6, 8, 5}, {0.7, 0.0, 2.2}}, {{4, 4, 4}, {0.0, 0.0, 0.0}},
               {{9, 6, 7}, {1.3, 1.1, 0.9}}};
  for (const Case& c : cases) {
    const Geometry g = grid(c.size);
    Volume<float> x(g, 2), y(g, 2), gx(g, 2), gty(g, 2);
    fill_random(x, 1, -1.f, 1.f);
    fill_random(y, 2, -1.f, 1.f);
    gaussian_smooth(kCpu, x.view(), gx.view(), c.sigma, whole_box(g));
    gaussian_smooth_adjoint(kCpu, y.view(), gty.view(), c.sigma);
    double lhs = 0, rhs = 0, scale = 0;
    for (index_t e = 0; e < x.element_count(); ++e) {
      lhs += double(gx.data()[e]) * double(y.data()[e]);
      rhs += double(x.data()[e]) * double(gty.data()[e]);
      scale += std::abs(double(x.data()[e]) * double(y.data()[e]));
    }
    EXPECT_NEAR(lhs, rhs, 1e-6 * scale) << c.size.x << "x" << c.size.y << "x" << c.size.z;
  }
  // Not the forward op at the edges (the replicate boundary is not symmetric), the same inside.
  const Geometry g = grid({12, 3, 3});
  Volume<float> y(g), fwd(g), adj(g);
  fill_random(y, 3);
  gaussian_smooth(kCpu, y.view(), fwd.view(), Vec3d{1.0, 0.0, 0.0}, whole_box(g));
  gaussian_smooth_adjoint(kCpu, y.view(), adj.view(), Vec3d{1.0, 0.0, 0.0});
  EXPECT_NE(fwd(0, 1, 1), adj(0, 1, 1));
  EXPECT_NEAR(fwd(6, 1, 1), adj(6, 1, 1), 1e-6);
  // Whole volumes on the CPU only.
  Volume<float> part(g, Box{{0, 0, 0}, {12, 3, 2}}, 1);
  EXPECT_THROW(gaussian_smooth_adjoint(kCpu, part.view(), adj.view(), Vec3d{1.0, 0.0, 0.0}), Error);
  EXPECT_THROW(gaussian_smooth_adjoint(kCpu, y.view(), y.view(), Vec3d{1.0, 0.0, 0.0}), Error);
}

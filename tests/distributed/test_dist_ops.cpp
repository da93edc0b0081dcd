// Sharded ops against the single-process ops on the whole volume (CPU backend, MPI host
// communicator): per-voxel outputs on each rank's owned slab bitwise equal, global loss values
// and counts bitwise equal, the Mattes joint histogram identical. With P = 1 this is the
// invariant "one rank is the single process"; with P = 2, 3, 4 it is the sharding invariant.
// Every rank also computes the whole-volume reference (small volumes), so each rank checks its
// own slab, and all ranks agree on the outcome.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gigareg/distributed/sharded_ops.hpp"
#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"
#include "mpi_test.hpp"
#include "test_util.hpp"

namespace gigareg::dist {
namespace {

using gigareg::test::bitwise_equal;
using gigareg::test::make_geometry;
using gigareg::test::oblique_geometry;
using gigareg::test::poison;
using gigareg::test::random_smooth_field;
using gigareg::test::random_smooth_volume;
using gigareg::test::random_volume;
using test::poisoned_shard;
using test::world;

const Context kCpu = Context::cpu();

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const LossValue& a, const LossValue& b) {
  return same_bits(a.sum, b.sum) && same_bits(a.count, b.count);
}

/// Whole-volume loss partials summed by reduce_slices (the single-process number).
struct WholeLoss {
  explicit WholeLoss(index_t nz) : partials(std::size_t(nz) * kLossTerms), slices(nz) {}
  SlicePartials view() { return {partials.data(), slices, kLossTerms}; }
  LossValue value() { return gigareg::reduce_loss(kCpu, view()); }
  std::vector<double> partials;
  index_t slices;
};

/// Images for the loss tests: smooth plus noise (so windows are not degenerate), a mask with
/// holes, sized so that each of 4 ranks owns several slices.
struct Images {
  Geometry g;
  Volume<float> fixed, warped, mask;
};
Images make_images(std::uint64_t seed) {
  Images im;
  im.g = oblique_geometry({30, 28, 36});
  im.fixed = random_smooth_volume(im.g, seed, 1.0, 0.2, 2.0);
  im.warped = random_smooth_volume(im.g, seed + 1, 1.0, -0.1, 2.0);
  const Volume<float> noise = random_volume(im.g, seed + 2, -0.2, 0.2);
  for (index_t e = 0; e < im.g.voxel_count(); ++e) {
    im.warped.data()[e] = 0.7f * im.fixed.data()[e] + 0.5f * im.warped.data()[e] + noise.data()[e];
  }
  im.mask = random_smooth_volume(im.g, seed + 3, 1.0, 0.6);
  return im;
}

// -------------------------------------------------------------------------------------------
TEST(DistOps, GaussianSmoothingScalarAndFieldBitwise) {
  Communicator& c = world();
  const Geometry g = oblique_geometry({26, 22, 40});
  const Shard shard(kCpu, c, g.size);
  for (int components : {1, 3}) {
    const Volume<float> whole = components == 1 ? random_volume(g, 11, -1, 1)
                                                : random_smooth_field(g, 12, 2.0, 3.0);
    const Vec3d sigma{1.2, 0.8, 1.5};  // radii 4, 3, 5
    Volume<float> ref(g, components);
    gigareg::gaussian_smooth(kCpu, whole.view(), ref.view(), sigma, gigareg::test::whole_box(g));
    const Index3 halo = smoothing_halo(sigma);
    EXPECT_EQ(halo.z, 5);
    Volume<float> in = poisoned_shard(whole, shard.halo_box(halo), shard.owned());
    Volume<float> out(g, shard.owned(), components);
    poison(out);
    gaussian_smooth(shard, in, out.view(), sigma);
    EXPECT_ALL_RANKS(bitwise_equal(out, ref, shard.owned()));
  }
}

TEST(DistOps, MeanSquaresLossAndGradientBitwise) {
  Communicator& c = world();
  const Images im = make_images(21);
  const Shard shard(kCpu, c, im.g.size);
  for (bool use_mask : {false, true}) {
    const VolumeView<const float> mw = use_mask ? im.mask.view() : VolumeView<const float>{};
    WholeLoss whole(im.g.size.z);
    Volume<float> ref(im.g);
    gigareg::mse_loss(kCpu, im.fixed.view(), im.warped.view(), mw, gigareg::test::whole_box(im.g),
                      whole.view(), ref.view());
    const Box own = shard.owned();
    const Volume<float> f = extract_box(im.fixed, own), w = extract_box(im.warped, own),
                        m = extract_box(im.mask, own);
    Volume<float> grad(im.g, own, 1);
    poison(grad);
    const LossValue v = mse_loss(shard, f.view(), w.view(),
                                 use_mask ? m.view() : VolumeView<const float>{}, grad.view());
    EXPECT_ALL_RANKS(same_bits(v, whole.value()));
    EXPECT_ALL_RANKS(bitwise_equal(grad, ref, own));
  }
}

TEST(DistOps, LnccLossAndExactGradientBitwise) {
  Communicator& c = world();
  const Images im = make_images(31);
  const Shard shard(kCpu, c, im.g.size);
  LnccParams box;
  box.radius = 2;
  LnccParams gauss;
  gauss.window = LnccWindow::Gaussian;
  gauss.sigma = 0.8;  // H = 3
  LnccParams ants = box;
  ants.gradient = LnccGradient::AntsApproximation;
  int n = 0;
  for (const LnccParams& q : {box, gauss, ants})
    for (bool use_mask : {false, true}) {
      ++n;
      WholeLoss whole(im.g.size.z);
      Volume<float> ref(im.g);
      gigareg::lncc_loss(kCpu, im.fixed.view(), im.warped.view(),
                         use_mask ? im.mask.view() : VolumeView<const float>{},
                         gigareg::test::whole_box(im.g), q, whole.view(), ref.view());
      const Box own = shard.owned();
      Volume<float> f = poisoned_shard(im.fixed, shard.halo_box(lncc_image_halo(q)), own);
      Volume<float> w = poisoned_shard(im.warped, shard.halo_box(lncc_image_halo(q)), own);
      Volume<float> m = poisoned_shard(im.mask, shard.halo_box(lncc_mask_halo(q)), own);
      Volume<float> grad(im.g, own, 1);
      poison(grad);
      const LossValue v = lncc_loss(shard, f, w, use_mask ? &m : nullptr, q, grad.view());
      EXPECT_ALL_RANKS(same_bits(v, whole.value()));
      EXPECT_ALL_RANKS(bitwise_equal(grad, ref, own));
      // The next iteration: only the warped image changes; Refresh::Varying exchanges it alone.
      Volume<float> w2 = poisoned_shard(im.fixed, w.box(), own);  // W := F
      Volume<float> ref2(im.g);
      WholeLoss whole2(im.g.size.z);
      gigareg::lncc_loss(kCpu, im.fixed.view(), im.fixed.view(),
                         use_mask ? im.mask.view() : VolumeView<const float>{},
                         gigareg::test::whole_box(im.g), q, whole2.view(), ref2.view());
      const LossValue v2 = lncc_loss(shard, f, w2, use_mask ? &m : nullptr, q, grad.view(),
                                     Refresh::Varying);
      EXPECT_ALL_RANKS(same_bits(v2, whole2.value()));
      EXPECT_ALL_RANKS(bitwise_equal(grad, ref2, own));
    }
  EXPECT_EQ(n, 6);
}

TEST(DistOps, MattesHistogramValueAndGradientBitwise) {
  Communicator& c = world();
  const Images im = make_images(41);
  const Shard shard(kCpu, c, im.g.size);
  const Box own = shard.owned();
  const Volume<float> f = extract_box(im.fixed, own), w = extract_box(im.warped, own),
                      m = extract_box(im.mask, own);
  for (bool use_mask : {false, true}) {
    const VolumeView<const float> mw = use_mask ? im.mask.view() : VolumeView<const float>{};
    const VolumeView<const float> ms = use_mask ? m.view() : VolumeView<const float>{};
    // Intensity ranges: global min / max, exactly the whole volume's.
    MattesParams params;
    params.bins = 24;
    for (int which = 0; which < 2; ++which) {
      const Volume<float>& img = which == 0 ? im.fixed : im.warped;
      std::vector<double> part(std::size_t(im.g.size.z) * kRangeTerms);
      gigareg::intensity_range(kCpu, img.view(), mw, gigareg::test::whole_box(im.g),
                               {part.data(), im.g.size.z, kRangeTerms});
      const IntensityRange ref =
          gigareg::reduce_intensity_range(kCpu, {part.data(), im.g.size.z, kRangeTerms});
      const IntensityRange got = intensity_range(shard, which == 0 ? f.view() : w.view(), ms);
      EXPECT_ALL_RANKS(same_bits(got.min, ref.min) && same_bits(got.max, ref.max));
      (which == 0 ? params.fixed_min : params.moving_min) = float(got.min);
      (which == 0 ? params.fixed_max : params.moving_max) = float(got.max);
    }
    for (ParzenWindow fw : {ParzenWindow::Box, ParzenWindow::CubicBSpline}) {
      params.fixed_window = fw;
      const int bins = params.bins;
      std::vector<std::int64_t> ref_hist(std::size_t(bins * bins));
      gigareg::mattes_histogram(kCpu, im.fixed.view(), im.warped.view(), mw,
                                gigareg::test::whole_box(im.g), params, {ref_hist.data(), bins});
      double ref_value[2] = {0, 0};
      Volume<float> ref(im.g);
      gigareg::mattes_mi(kCpu, im.fixed.view(), im.warped.view(), mw,
                         gigareg::test::whole_box(im.g), params, {ref_value, 1, kLossTerms},
                         ref.view());
      Volume<float> grad(im.g, own, 1);
      poison(grad);
      std::vector<std::int64_t> hist;
      const LossValue v = mattes_mi(shard, f.view(), w.view(), ms, params, grad.view(), &hist);
      EXPECT_ALL_RANKS(hist == ref_hist);
      EXPECT_ALL_RANKS(same_bits(v, LossValue{ref_value[0], ref_value[1]}));
      EXPECT_ALL_RANKS(bitwise_equal(grad, ref, own));
    }
  }
}

TEST(DistOps, MaxNormIsExact) {
  Communicator& c = world();
  const Geometry g = make_geometry({20, 18, 24});
  const Shard shard(kCpu, c, g.size);
  const Volume<float> u = random_volume(g, 51, -3, 3, 3);
  std::vector<double> part(std::size_t(g.size.z));
  gigareg::max_norm_partials(kCpu, u.view(), gigareg::test::whole_box(g), {part.data(), g.size.z, 1});
  const double ref = gigareg::reduce_slices_max(kCpu, {part.data(), g.size.z, 1});
  const Volume<float> mine = extract_box(u, shard.owned());
  EXPECT_ALL_RANKS(same_bits(max_norm(shard, mine.view()), ref));
}

TEST(DistOps, ComposeFieldsWithDisplacementHaloBitwise) {
  Communicator& c = world();
  const Geometry g = oblique_geometry({24, 22, 32});  // spacing_z 1.6 mm, slabs of 8 at P = 4
  const Shard shard(kCpu, c, g.size);
  const Box own = shard.owned();
  for (double max_mm : {0.7, 3.0, 14.0}) {  // the last: a halo thicker than a slab at P = 4
    const Volume<float> v = random_smooth_field(g, 61, max_mm, 2.0);
    const Volume<float> u = random_smooth_field(g, 62, 2.0, 2.0);
    Volume<float> ref(g, 3);
    gigareg::compose_fields(kCpu, v.view(), g, u.view(), g, ref.view(), gigareg::test::whole_box(g));
    const Volume<float> vs = extract_box(v, own);
    Volume<float> us = poisoned_shard(u, own, own);  // no halo yet: compose grows it
    Volume<float> out(g, own, 3);
    poison(out);
    const Index3 halo = compose_fields(shard, vs.view(), g, us, out.view());
    EXPECT_ALL_RANKS(bitwise_equal(out, ref, own));
    EXPECT_ALL_RANKS(us.box() == shard.halo_box(halo));
    // The halo bound: ceil(max|v| / spacing_z) + 1 (oblique but orthonormal direction).
    double vmax = 0;
    for (index_t e = 0; e < g.voxel_count(); ++e) {
      const double x = v.data()[e], y = v.data()[e + g.voxel_count()],
                   z = v.data()[e + 2 * g.voxel_count()];
      vmax = std::max(vmax, std::sqrt(x * x + y * y + z * z));
    }
    EXPECT_GE(halo.z, index_t(std::ceil(vmax / g.spacing.z)) + 1);
    EXPECT_LE(halo.z, index_t(std::ceil(vmax / g.spacing.z)) + 2);
  }
}

TEST(DistOps, JacobianDeterminantAndFoldCountBitwise) {
  Communicator& c = world();
  const Geometry g = oblique_geometry({22, 20, 32});
  const Shard shard(kCpu, c, g.size);
  const Box own = shard.owned();
  const Volume<float> u = random_smooth_field(g, 71, 4.0, 3.0);  // strong enough to fold somewhere
  Volume<float> ref(g);
  std::vector<double> part(std::size_t(g.size.z));
  gigareg::jacobian_determinant(kCpu, u.view(), g, ref.view(), gigareg::test::whole_box(g),
                                {part.data(), g.size.z, 1});
  const double folds = gigareg::reduce_slices(kCpu, {part.data(), g.size.z, 1})[0];
  Volume<float> us = poisoned_shard(u, shard.halo_box(jacobian_halo()), own);
  Volume<float> det(g, own, 1);
  poison(det);
  const std::int64_t count = jacobian_determinant(shard, us, g, det.view());
  EXPECT_ALL_RANKS(bitwise_equal(det, ref, own));
  EXPECT_EQ(double(count), folds);
  EXPECT_GT(count, 0);  // the field does fold: the count is exercised
}

TEST(DistOps, LossSumsGatherSlicesInGlobalOrder) {
  // Per-slice partials with wildly different magnitudes: any other summation order would change
  // the bits; the sharded sum must equal reduce_slices over the whole volume's slices.
  Communicator& c = world();
  const Geometry g = make_geometry({4, 4, 23});
  const Shard shard(kCpu, c, g.size);
  std::vector<double> all(std::size_t(g.size.z) * 2);
  for (index_t k = 0; k < g.size.z; ++k) {
    all[std::size_t(2 * k)] = std::ldexp(1.0 + 0.1 * double(k), int(k % 7) * 9 - 30) * (k % 2 ? -1 : 1);
    all[std::size_t(2 * k + 1)] = 1.0 / double(k + 3);
  }
  const std::vector<double> ref = gigareg::reduce_slices(kCpu, {all.data(), g.size.z, 2});
  const Box own = shard.owned();
  std::vector<double> mine(all.begin() + 2 * own.lo.z, all.begin() + 2 * own.hi().z);
  const std::vector<double> got = reduce_slices(shard, {mine.data(), own.size.z, 2});
  EXPECT_ALL_RANKS(same_bits(got[0], ref[0]) && same_bits(got[1], ref[1]));
}

TEST(DistOps, ShardChecksItsArguments) {
  Communicator& c = world();
  EXPECT_THROW(Shard(kCpu, c, Decomposition::slabs({4, 4, 8}, c.size() + 1)), Error);
  EXPECT_THROW(Shard(Context::cuda(), c, Index3{4, 4, 8}), Error);  // host communicator
  EXPECT_THROW(compose_halo(make_geometry({4, 4, 4}), std::nan("")), Error);
}

}  // namespace
}  // namespace gigareg::dist

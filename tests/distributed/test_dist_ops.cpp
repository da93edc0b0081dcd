// The ops as the sharded registration runs them (CPU backend, MPI host communicator): a
// ShardPartition owns each rank's z-slab and fills the halos the registration asks for
// (reg::metric_image_halo and metric_mask_halo, reg::displacement_halo, gaussian_radii), and the
// registration's own pieces combine the global numbers (reg::Metric for the losses,
// reg::global_range, reg::global_max_norm, Partition::gather_slices). Per-voxel outputs on each
// rank's owned slab must equal the single process's bitwise, and so must global values and the
// Mattes joint histogram. With P = 1 this is the invariant "one rank is the single process"; with
// P = 2, 3, 4 it is the sharding invariant. Every rank also computes the single-process reference
// (small volumes), checks its own slab, and all ranks agree on the outcome.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gigareg/distributed/halo.hpp"
#include "gigareg/distributed/partition.hpp"
#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/smooth.hpp"
#include "mpi_test.hpp"
#include "registration/halos.hpp"
#include "registration/metric.hpp"
#include "registration/reductions.hpp"
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
using gigareg::test::whole_box;
using test::poisoned_shard;
using test::world;

const Context kCpu = Context::cpu();

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }
bool same_bits(const LossValue& a, const LossValue& b) {
  return same_bits(a.sum, b.sum) && same_bits(a.count, b.count);
}

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

/// What a process of the registration holds of `whole` before an op that reads `halo` around
/// its slab: the owned voxels, the halo filled by the partition (NaN before the exchange, so a
/// voxel the exchange misses shows).
Volume<float> shard_with_halo(const Partition& part, const Volume<float>& whole, Index3 halo) {
  const Index3 n = whole.geometry().size;
  Volume<float> v = poisoned_shard(whole, part.halo_box(n, halo), part.owned(n));
  part.exchange_halos({&v}, halo);
  return v;
}

// -------------------------------------------------------------------------------------------
TEST(DistOps, GaussianSmoothingScalarAndFieldBitwise) {
  const ShardPartition part(world());
  const Geometry g = oblique_geometry({26, 22, 40});
  const Box own = part.owned(g.size);
  for (int components : {1, 3}) {
    const Volume<float> whole = components == 1 ? random_volume(g, 11, -1, 1)
                                                : random_smooth_field(g, 12, 2.0, 3.0);
    const Vec3d sigma{1.2, 0.8, 1.5};  // radii 4, 3, 5
    Volume<float> ref(g, components);
    gigareg::gaussian_smooth(kCpu, whole.view(), ref.view(), sigma, whole_box(g));
    const Index3 halo = gaussian_radii(sigma);
    EXPECT_EQ(halo.z, 5);
    const Volume<float> in = shard_with_halo(part, whole, halo);
    Volume<float> out(g, own, components);
    poison(out);
    gigareg::gaussian_smooth(kCpu, in.view(), out.view(), sigma, own);
    EXPECT_ALL_RANKS(bitwise_equal(out, ref, own));
  }
}

/// The stage metric of every type, with and without a mask, sharded against one process: the
/// registration's reg::Metric on both sides, so the loss path (halo exchange of the warped
/// image, gathered slice partials, the all-reduced MI histogram) is the one register_images runs.
TEST(DistOps, StageMetricsMatchOneProcessBitwise) {
  const ShardPartition part(world());
  const Images im = make_images(21);
  const Geometry& g = im.g;
  const Box own = part.owned(g.size);
  MetricParams mse, cc, mi;
  mse.type = MetricType::MeanSquares;
  cc.type = MetricType::CC;
  cc.radius = 2;
  mi.type = MetricType::MI;
  mi.bins = 24;
  int n = 0;
  for (const MetricParams& m : {mse, cc, mi})
    for (bool use_mask : {false, true}) {
      ++n;
      // The ranges the level computes: global over the masked fixed image and the moving one.
      const VolumeView<const float> whole_mask = use_mask ? im.mask.view() : VolumeView<const float>{};
      const IntensityRange fr1 = reg::global_range(kCpu, single_process(), im.fixed.view(), whole_mask, whole_box(g));
      const IntensityRange wr1 = reg::global_range(kCpu, single_process(), im.warped.view(), {}, whole_box(g));
      const Index3 image_halo = reg::metric_image_halo(m), mask_halo = reg::metric_mask_halo(m);
      const Volume<float> f = shard_with_halo(part, im.fixed, image_halo);
      const Volume<float> mk = shard_with_halo(part, im.mask, mask_halo);
      const VolumeView<const float> mask = use_mask ? mk.view() : VolumeView<const float>{};
      const IntensityRange fr = reg::global_range(kCpu, part, f.view(), mask, own);
      const IntensityRange wr = reg::global_range(kCpu, part, im.warped.view(), {}, own);
      EXPECT_ALL_RANKS(same_bits(fr.min, fr1.min) && same_bits(fr.max, fr1.max));
      EXPECT_ALL_RANKS(same_bits(wr.min, wr1.min) && same_bits(wr.max, wr1.max));

      reg::Metric one(kCpu, single_process(), m, g, whole_box(g), fr1, wr1);
      reg::Metric sharded(kCpu, part, m, g, own, fr, wr);
      // Two iterations: the warped image changes (W := F in the second), the fixed image and the
      // mask do not; the metric refreshes the warped image's halo itself.
      for (const Volume<float>* source : {&im.warped, &im.fixed}) {
        Volume<float> w1 = poisoned_shard(*source, whole_box(g), whole_box(g));
        Volume<float> ref(g);
        one.launch(im.fixed.view(), w1, whole_mask, ref.view());
        const LossValue expected = one.value();
        Volume<float> w = poisoned_shard(*source, part.halo_box(g.size, image_halo), own);
        Volume<float> grad(g, own, 1);
        poison(grad);
        sharded.launch(f.view(), w, mask, grad.view());
        EXPECT_ALL_RANKS(same_bits(sharded.value(), expected));
        EXPECT_ALL_RANKS(bitwise_equal(grad, ref, own));
      }
    }
  EXPECT_EQ(n, 6);
}

TEST(DistOps, GlobalMaxNormIsExact) {
  const ShardPartition part(world());
  const Geometry g = make_geometry({20, 18, 24});
  const Volume<float> u = random_volume(g, 51, -3, 3, 3);
  const double ref = reg::global_max_norm(kCpu, single_process(), u, whole_box(g));
  const Volume<float> mine = extract_box(u, part.owned(g.size));
  EXPECT_ALL_RANKS(same_bits(reg::global_max_norm(kCpu, part, mine, part.owned(g.size)), ref));
}

/// The compositive update as the greedy stage runs it: the field's halo from the bound of the
/// displacement it is sampled along (reg::displacement_halo), filled by the partition.
TEST(DistOps, ComposeFieldsWithDisplacementHaloBitwise) {
  const ShardPartition part(world());
  const Geometry g = oblique_geometry({24, 22, 32});  // spacing_z 1.6 mm, slabs of 8 at P = 4
  const Box own = part.owned(g.size);
  for (double max_mm : {0.7, 3.0, 14.0}) {  // the last: a halo thicker than a slab at P = 4
    const Volume<float> v = random_smooth_field(g, 61, max_mm, 2.0);
    const Volume<float> u = random_smooth_field(g, 62, 2.0, 2.0);
    Volume<float> ref(g, 3);
    gigareg::compose_fields(kCpu, v.view(), g, u.view(), g, ref.view(), whole_box(g));
    const Volume<float> vs = extract_box(v, own);
    const double bound = reg::global_max_norm(kCpu, part, vs, own);
    const Index3 halo = reg::displacement_halo(g, bound);
    const Volume<float> us = shard_with_halo(part, u, halo);
    Volume<float> out(g, own, 3);
    poison(out);
    gigareg::compose_fields(kCpu, vs.view(), g, us.view(), g, out.view(), own);
    EXPECT_ALL_RANKS(bitwise_equal(out, ref, own));
    // The halo bound: ceil(max|v| / spacing_z) + 1 (oblique but orthonormal direction).
    EXPECT_GE(halo.z, index_t(std::ceil(bound / g.spacing.z)) + 1);
    EXPECT_LE(halo.z, index_t(std::ceil(bound / g.spacing.z)) + 2);
  }
  EXPECT_THROW(reg::displacement_halo(g, std::nan("")), Error);
}

TEST(DistOps, JacobianDeterminantAndFoldCountBitwise) {
  const ShardPartition part(world());
  const Geometry g = oblique_geometry({22, 20, 32});
  const Box own = part.owned(g.size);
  const Volume<float> u = random_smooth_field(g, 71, 4.0, 3.0);  // strong enough to fold somewhere
  Volume<float> ref(g);
  std::vector<double> slices(std::size_t(g.size.z));
  gigareg::jacobian_determinant(kCpu, u.view(), g, ref.view(), whole_box(g), {slices.data(), g.size.z, 1});
  const double folds = gigareg::reduce_slices(kCpu, {slices.data(), g.size.z, 1})[0];
  const Volume<float> us = shard_with_halo(part, u, {1, 1, 1});  // the op's halo (ops/field.hpp)
  Volume<float> det(g, own, 1);
  poison(det);
  std::vector<double> mine(std::size_t(own.size.z));
  gigareg::jacobian_determinant(kCpu, us.view(), g, det.view(), own, {mine.data(), own.size.z, 1});
  std::vector<double> all = part.gather_host_slices(mine, g.size.z, 1);
  EXPECT_ALL_RANKS(bitwise_equal(det, ref, own));
  EXPECT_EQ(gigareg::reduce_slices(kCpu, {all.data(), g.size.z, 1})[0], folds);
  EXPECT_GT(folds, 0);  // the field does fold: the count is exercised
}

TEST(DistOps, LossSumsGatherSlicesInGlobalOrder) {
  // Per-slice partials with wildly different magnitudes: any other summation order would change
  // the bits; the gathered sum must equal reduce_slices over the whole volume's slices.
  const ShardPartition part(world());
  const Geometry g = make_geometry({4, 4, 23});
  std::vector<double> all(std::size_t(g.size.z) * 2);
  for (index_t k = 0; k < g.size.z; ++k) {
    all[std::size_t(2 * k)] = std::ldexp(1.0 + 0.1 * double(k), int(k % 7) * 9 - 30) * (k % 2 ? -1 : 1);
    all[std::size_t(2 * k + 1)] = 1.0 / double(k + 3);
  }
  const std::vector<double> ref = gigareg::reduce_slices(kCpu, {all.data(), g.size.z, 2});
  const Box own = part.owned(g.size);
  std::vector<double> mine(all.begin() + 2 * own.lo.z, all.begin() + 2 * own.hi().z);
  std::vector<double> gathered(all.size());
  part.gather_slices({mine.data(), own.size.z, 2}, g.size.z, {gathered.data(), g.size.z, 2},
                     MemorySpace::Host);
  const std::vector<double> got = gigareg::reduce_slices(kCpu, {gathered.data(), g.size.z, 2});
  EXPECT_ALL_RANKS(same_bits(got[0], ref[0]) && same_bits(got[1], ref[1]));
}

}  // namespace
}  // namespace gigareg::dist

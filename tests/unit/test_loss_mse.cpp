// Mean-squares loss (CPU): value against a direct sum, gradient by central finite differences,
// mask semantics, slab-and-stitch, determinism, value-only and gradient-only calls, bad arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/loss.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

const Context kCpu = Context::cpu();

struct Pair {
  Geometry g;
  Volume<float> fixed, warped, mask;
};

Pair make_pair(Index3 size, std::uint64_t seed) {
  Pair p;
  p.g = make_geometry(size);
  p.fixed = random_smooth_volume(p.g, seed, 1.0, 0.5);
  p.warped = random_smooth_volume(p.g, seed + 1, 0.8, 0.4);
  p.mask = random_smooth_volume(p.g, seed + 2, 1.0, 0.45);  // about half the voxels above 0.5
  return p;
}

VolumeView<const float> no_mask() { return {}; }

struct Result {
  std::vector<double> partials;
  Volume<float> grad;
  LossValue value() const {
    LossValue v;
    for (std::size_t s = 0; s < partials.size(); s += 2) {
      v.sum += partials[s];
      v.count += partials[s + 1];
    }
    return v;
  }
};

Result run(const Pair& p, bool use_mask, const Box& owned) {
  Result r{std::vector<double>(std::size_t(owned.size.z) * kLossTerms), Volume<float>(p.g)};
  poison(r.grad);
  mse_loss(kCpu, p.fixed.view(), p.warped.view(), use_mask ? p.mask.view() : no_mask(), owned,
           {r.partials.data(), owned.size.z, kLossTerms}, r.grad.view());
  return r;
}

double loss_sum(const Pair& p, const Volume<float>& warped, bool use_mask) {
  const Box all = whole_box(p.g);
  std::vector<double> partials(std::size_t(all.size.z) * kLossTerms);
  mse_loss(kCpu, p.fixed.view(), warped.view(), use_mask ? p.mask.view() : no_mask(), all,
           {partials.data(), all.size.z, kLossTerms}, {});
  double s = 0;
  for (std::size_t i = 0; i < partials.size(); i += 2) s += partials[i];
  return s;
}

}  // namespace

TEST(LossMse, ValueMatchesDirectSum) {
  const Pair p = make_pair({13, 11, 9}, 11);
  for (bool use_mask : {false, true}) {
    const Result r = run(p, use_mask, whole_box(p.g));
    double s = 0, c = 0;
    for (index_t k = 0; k < 9; ++k)
      for (index_t j = 0; j < 11; ++j)
        for (index_t i = 0; i < 13; ++i) {
          if (use_mask && !(p.mask(i, j, k) > 0.5f)) continue;
          const double d = double(p.warped(i, j, k)) - double(p.fixed(i, j, k));
          s += d * d;
          c += 1;
        }
    const LossValue v = r.value();
    EXPECT_EQ(v.count, c);
    EXPECT_NEAR(v.sum, s, 1e-6 * s);
    if (use_mask) {
      EXPECT_LT(c, 13 * 11 * 9);
    }
    EXPECT_GT(c, 0);
  }
}

TEST(LossMse, GradientMatchesFiniteDifferences) {
  const Pair p = make_pair({12, 10, 9}, 21);
  std::mt19937 rng(5);
  for (bool use_mask : {false, true}) {
    const Result r = run(p, use_mask, whole_box(p.g));
    Volume<float> w = p.warped.clone();
    int checked_masked_out = 0;
    for (int t = 0; t < 30; ++t) {
      const index_t i = rng() % 12, j = rng() % 10, k = rng() % 9;
      const float w0 = w(i, j, k);
      const float h = 1e-2f;
      w(i, j, k) = w0 + h;
      const double hp = double(w(i, j, k)) - double(w0);
      const double sp = loss_sum(p, w, use_mask);
      w(i, j, k) = w0 - h;
      const double hm = double(w0) - double(w(i, j, k));
      const double sm = loss_sum(p, w, use_mask);
      w(i, j, k) = w0;
      const double fd = (sp - sm) / (hp + hm);
      const double an = r.grad(i, j, k);
      EXPECT_NEAR(an, fd, 1e-3 * std::max(1.0, std::abs(fd))) << "voxel " << i << "," << j << "," << k;
      if (use_mask && !(p.mask(i, j, k) > 0.5f)) {
        EXPECT_EQ(an, 0.0);
        ++checked_masked_out;
      }
    }
    if (use_mask) {
      EXPECT_GT(checked_masked_out, 0);
    }
  }
}

TEST(LossMse, SlabsStitchBitwise) {
  const Pair p = make_pair({10, 9, 17}, 31);
  for (bool use_mask : {false, true}) {
    const Result whole = run(p, use_mask, whole_box(p.g));
    Volume<float> stitched(p.g);
    poison(stitched);
    std::vector<double> partials;
    for (const Box& slab : z_slabs(p.g.size, 3)) {
      const Volume<float> f = copy_box(p.fixed, slab), w = copy_box(p.warped, slab),
                          m = copy_box(p.mask, slab);
      Volume<float> g(p.g, slab, 1);
      std::vector<double> part(std::size_t(slab.size.z) * kLossTerms);
      mse_loss(kCpu, f.view(), w.view(), use_mask ? m.view() : no_mask(), slab,
               {part.data(), slab.size.z, kLossTerms}, g.view());
      paste_box(stitched, g, slab);
      partials.insert(partials.end(), part.begin(), part.end());
    }
    EXPECT_TRUE(bitwise_equal(stitched, whole.grad, whole_box(p.g)));
    ASSERT_EQ(partials.size(), whole.partials.size());
    for (std::size_t s = 0; s < partials.size(); ++s) EXPECT_EQ(partials[s], whole.partials[s]);
  }
}

TEST(LossMse, DeterministicAndModes) {
  const Pair p = make_pair({9, 8, 7}, 41);
  const Box all = whole_box(p.g);
  const Result a = run(p, true, all), b = run(p, true, all);
  EXPECT_TRUE(bitwise_equal(a.grad, b.grad, all));
  EXPECT_EQ(a.partials, b.partials);
  // Value only and gradient only give the same numbers.
  std::vector<double> partials(std::size_t(all.size.z) * kLossTerms);
  mse_loss(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), all,
           {partials.data(), all.size.z, kLossTerms}, {});
  EXPECT_EQ(partials, a.partials);
  Volume<float> g(p.g);
  mse_loss(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), all, {}, g.view());
  EXPECT_TRUE(bitwise_equal(g, a.grad, all));
  // Only the owned box is written.
  const Box inner{{1, 2, 3}, {5, 4, 2}};
  Volume<float> gi(p.g);
  poison(gi);
  std::vector<double> pi(2 * kLossTerms);
  mse_loss(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), inner, {pi.data(), 2, kLossTerms},
           gi.view());
  const PoisonCheck pc = check_written(gi, inner);
  EXPECT_EQ(pc.unwritten_inside, 0);
  EXPECT_EQ(pc.touched_outside, 0);
}

TEST(LossMse, RejectsBadArguments) {
  const Pair p = make_pair({8, 8, 8}, 51);
  const Box all = whole_box(p.g);
  std::vector<double> partials(3 * kLossTerms);  // wrong slice count
  Volume<float> g(p.g);
  EXPECT_THROW(mse_loss(kCpu, p.fixed.view(), p.warped.view(), {}, all,
                        {partials.data(), 3, kLossTerms}, g.view()),
               Error);
  const Volume<float> small = copy_box(p.warped, Box{{0, 0, 0}, {8, 8, 4}});
  std::vector<double> ok(8 * kLossTerms);
  EXPECT_THROW(mse_loss(kCpu, p.fixed.view(), small.view(), {}, all, {ok.data(), 8, kLossTerms},
                        g.view()),
               Error);
  EXPECT_THROW(mse_loss(Context::cuda(), p.fixed.view(), p.warped.view(), {}, all,
                        {ok.data(), 8, kLossTerms}, g.view()),
               Error);
}

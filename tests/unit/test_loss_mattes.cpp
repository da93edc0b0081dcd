// Mattes mutual information (CPU): against a naive double-precision Parzen histogram, central
// finite differences of the loss sum, exact integer histogram sums over slabs, determinism
// across thread counts, the single-call convenience, masks and owned boxes, clamping, the
// intensity range op, bad arguments.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
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
  MattesParams params;
};

/// A smooth pair with a nonlinear intensity relation; ranges a little wider than the data so
/// that no voxel sits on a clamped range end.
Pair make_pair(Index3 size, std::uint64_t seed, int bins, ParzenWindow fixed_window) {
  Pair p;
  p.g = make_geometry(size);
  p.fixed = random_smooth_volume(p.g, seed, 1.0, 0.0);
  const Volume<float> other = random_smooth_volume(p.g, seed + 1, 1.0, 0.0);
  p.warped = Volume<float>(p.g);
  for (index_t e = 0; e < p.warped.voxel_count(); ++e)
    p.warped.data()[e] = float(std::sin(2.0 * p.fixed.data()[e]) * 0.6 + 0.5 * other.data()[e]);
  p.mask = random_smooth_volume(p.g, seed + 2, 1.0, 0.45);
  auto range = [](const Volume<float>& v, float& lo, float& hi) {
    lo = *std::min_element(v.data(), v.data() + v.voxel_count());
    hi = *std::max_element(v.data(), v.data() + v.voxel_count());
    const float pad = 0.01f * (hi - lo);
    lo -= pad;
    hi += pad;
  };
  range(p.fixed, p.params.fixed_min, p.params.fixed_max);
  range(p.warped, p.params.moving_min, p.params.moving_max);
  p.params.bins = bins;
  p.params.fixed_window = fixed_window;
  return p;
}

VolumeView<const float> mask_of(const Pair& p, bool use_mask) {
  return use_mask ? p.mask.view() : VolumeView<const float>{};
}

struct Result {
  LossValue value;
  std::vector<std::int64_t> hist;
  Volume<float> grad;
};

Result run(const Pair& p, bool use_mask, const Box& owned) {
  const int n = p.params.bins;
  Result r{{}, std::vector<std::int64_t>(std::size_t(n * n)), Volume<float>(p.g)};
  poison(r.grad);
  std::vector<float> table(std::size_t(n * n));
  double value[2] = {0, 0};
  mattes_histogram(kCpu, p.fixed.view(), p.warped.view(), mask_of(p, use_mask), owned, p.params,
                   {r.hist.data(), n});
  mattes_table(kCpu, {r.hist.data(), n}, p.params, {table.data(), n}, {value, 1, kLossTerms});
  mattes_gradient(kCpu, p.fixed.view(), p.warped.view(), mask_of(p, use_mask), owned, p.params,
                  {table.data(), n}, r.grad.view());
  r.value = {value[0], value[1]};
  return r;
}

double loss_sum(const Pair& p, const Volume<float>& warped, bool use_mask) {
  double value[2] = {0, 0};
  mattes_mi(kCpu, p.fixed.view(), warped.view(), mask_of(p, use_mask), whole_box(p.g), p.params,
            {value, 1, kLossTerms}, {});
  return value[0];
}

// ---- The naive reference, in double, from the definitions.
double bspline3(double t) {
  t = std::abs(t);
  if (t < 1) return 2.0 / 3.0 - t * t + 0.5 * t * t * t;
  if (t < 2) return (2 - t) * (2 - t) * (2 - t) / 6.0;
  return 0.0;
}
double bspline3_derivative(double t) {
  const double s = t < 0 ? -1.0 : 1.0;
  t = std::abs(t);
  if (t < 1) return s * (-2 * t + 1.5 * t * t);
  if (t < 2) return s * (-0.5 * (2 - t) * (2 - t));
  return 0.0;
}

struct Naive {
  double mi = 0, total = 0;
  std::vector<double> grad;
};

Naive naive_mi(const Pair& p, bool use_mask) {
  const int n = p.params.bins;
  const bool cubic_fixed = p.params.fixed_window == ParzenWindow::CubicBSpline;
  auto cubic_u = [&](double v, double lo, double hi, double& slope) {
    slope = (n - 3) / (hi - lo);
    double u = (v - lo) * slope + 1;
    if (u < 1) u = 1, slope = 0;
    if (u > n - 2) u = n - 2, slope = 0;
    return u;
  };
  auto fixed_weights = [&](double f, std::vector<double>& wf) {
    wf.assign(std::size_t(n), 0.0);
    if (cubic_fixed) {
      double slope;
      const double u = cubic_u(f, p.params.fixed_min, p.params.fixed_max, slope);
      for (int i = 0; i < n; ++i) wf[std::size_t(i)] = bspline3(u - i);
    } else {
      const double s = (f - p.params.fixed_min) * n / (p.params.fixed_max - p.params.fixed_min);
      const int bin = std::min(n - 1, std::max(0, int(std::floor(s))));
      wf[std::size_t(bin)] = 1;
    }
  };
  std::vector<double> h(std::size_t(n * n), 0.0), wf;
  const Index3 sz = p.g.size;
  for (index_t k = 0; k < sz.z; ++k)
    for (index_t j = 0; j < sz.y; ++j)
      for (index_t i = 0; i < sz.x; ++i) {
        if (use_mask && !(p.mask(i, j, k) > 0.5f)) continue;
        fixed_weights(p.fixed(i, j, k), wf);
        double slope;
        const double u = cubic_u(p.warped(i, j, k), p.params.moving_min, p.params.moving_max, slope);
        for (int a = 0; a < n; ++a)
          for (int b = 0; b < n; ++b) h[std::size_t(a * n + b)] += wf[std::size_t(a)] * bspline3(u - b);
      }
  Naive out;
  std::vector<double> pf(std::size_t(n), 0.0), pm(std::size_t(n), 0.0);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) out.total += h[std::size_t(a * n + b)];
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      pf[std::size_t(a)] += h[std::size_t(a * n + b)] / out.total;
      pm[std::size_t(b)] += h[std::size_t(a * n + b)] / out.total;
    }
  std::vector<double> table(std::size_t(n * n), 0.0);
  for (int a = 0; a < n; ++a)
    for (int b = 0; b < n; ++b) {
      const double pj = h[std::size_t(a * n + b)] / out.total;
      if (pj <= 1e-300) continue;
      table[std::size_t(a * n + b)] = std::log(pj / (pf[std::size_t(a)] * pm[std::size_t(b)]));
      out.mi += pj * table[std::size_t(a * n + b)];
    }
  out.grad.assign(std::size_t(sz.x * sz.y * sz.z), 0.0);
  for (index_t k = 0; k < sz.z; ++k)
    for (index_t j = 0; j < sz.y; ++j)
      for (index_t i = 0; i < sz.x; ++i) {
        if (use_mask && !(p.mask(i, j, k) > 0.5f)) continue;
        fixed_weights(p.fixed(i, j, k), wf);
        double slope;
        const double u = cubic_u(p.warped(i, j, k), p.params.moving_min, p.params.moving_max, slope);
        double g = 0;
        for (int a = 0; a < n; ++a)
          for (int b = 0; b < n; ++b)
            g += table[std::size_t(a * n + b)] * wf[std::size_t(a)] * bspline3_derivative(u - b) * slope;
        out.grad[std::size_t((k * sz.y + j) * sz.x + i)] = -g;  // d(-MI T)/dW
      }
  return out;
}

std::string describe(const Pair& p, bool use_mask) {
  return std::to_string(p.params.bins) + " bins, " +
         (p.params.fixed_window == ParzenWindow::Box ? "box" : "cubic") + " fixed window" +
         (use_mask ? ", masked" : "");
}

}  // namespace

TEST(LossMattes, MatchesNaiveParzenReference) {
  for (ParzenWindow fw : {ParzenWindow::Box, ParzenWindow::CubicBSpline})
    for (int bins : {32, 16})
      for (bool use_mask : {false, true}) {
        const Pair p = make_pair({18, 17, 16}, 7 + bins, bins, fw);
        SCOPED_TRACE(describe(p, use_mask));
        const Result r = run(p, use_mask, whole_box(p.g));
        const Naive ref = naive_mi(p, use_mask);
        EXPECT_NEAR(r.value.count, ref.total, 1e-6 * ref.total);
        EXPECT_GT(ref.mi, 0.05);
        EXPECT_NEAR(-r.value.sum / r.value.count, ref.mi, 1e-6);
        double scale = 0, err = 0;
        for (index_t e = 0; e < r.grad.voxel_count(); ++e) {
          scale = std::max(scale, std::abs(ref.grad[std::size_t(e)]));
          err = std::max(err, std::abs(double(r.grad.data()[e]) - ref.grad[std::size_t(e)]));
        }
        EXPECT_GT(scale, 0.0);
        EXPECT_LT(err, 1e-4 * scale) << "max |grad - naive| " << err << " of " << scale;
      }
}

TEST(LossMattes, GradientMatchesFiniteDifferences) {
  std::mt19937 rng(3);
  for (ParzenWindow fw : {ParzenWindow::Box, ParzenWindow::CubicBSpline})
    for (bool use_mask : {false, true}) {
      const Pair p = make_pair({16, 15, 14}, 61, 32, fw);
      SCOPED_TRACE(describe(p, use_mask));
      const Result r = run(p, use_mask, whole_box(p.g));
      double scale = 0;
      for (index_t e = 0; e < r.grad.voxel_count(); ++e) scale = std::max(scale, double(std::abs(r.grad.data()[e])));
      ASSERT_GT(scale, 0.0);
      const double delta = (p.params.moving_max - p.params.moving_min) / (p.params.bins - 3);
      Volume<float> w = p.warped.clone();
      int nonzero = 0;
      for (int t = 0; t < 30; ++t) {
        const index_t i = rng() % 16, j = rng() % 15, k = rng() % 14;
        const float w0 = w(i, j, k);
        const float h = float(0.02 * delta);
        w(i, j, k) = w0 + h;
        const double hp = double(w(i, j, k)) - double(w0);
        const double sp = loss_sum(p, w, use_mask);
        w(i, j, k) = w0 - h;
        const double hm = double(w0) - double(w(i, j, k));
        const double sm = loss_sum(p, w, use_mask);
        w(i, j, k) = w0;
        const double fd = (sp - sm) / (hp + hm);
        const double an = r.grad(i, j, k);
        EXPECT_NEAR(an, fd, 1e-3 * std::abs(fd) + 2e-4 * scale) << "voxel " << i << "," << j << "," << k;
        nonzero += std::abs(fd) > 1e-2 * scale ? 1 : 0;
      }
      EXPECT_GT(nonzero, use_mask ? 8 : 20);
    }
}

TEST(LossMattes, SlabHistogramsSumExactly) {
  for (ParzenWindow fw : {ParzenWindow::Box, ParzenWindow::CubicBSpline}) {
    const Pair p = make_pair({14, 13, 19}, 71, 24, fw);
    const int n = p.params.bins;
    const Result whole = run(p, true, whole_box(p.g));
    std::vector<std::int64_t> sum(std::size_t(n * n), 0);
    Volume<float> stitched(p.g);
    poison(stitched);
    std::vector<float> table(std::size_t(n * n));
    mattes_table(kCpu, {const_cast<std::int64_t*>(whole.hist.data()), n}, p.params,
                 {table.data(), n}, {});
    for (const Box& slab : z_slabs(p.g.size, 3)) {
      const Volume<float> f = copy_box(p.fixed, slab), w = copy_box(p.warped, slab),
                          m = copy_box(p.mask, slab);
      std::vector<std::int64_t> h(std::size_t(n * n));
      mattes_histogram(kCpu, f.view(), w.view(), m.view(), slab, p.params, {h.data(), n});
      for (std::size_t c = 0; c < h.size(); ++c) sum[c] += h[c];
      Volume<float> g(p.g, slab, 1);
      mattes_gradient(kCpu, f.view(), w.view(), m.view(), slab, p.params, {table.data(), n}, g.view());
      paste_box(stitched, g, slab);
    }
    EXPECT_EQ(sum, whole.hist);
    EXPECT_TRUE(bitwise_equal(stitched, whole.grad, whole_box(p.g)));
    // Every voxel contributes about 2^26.
    std::int64_t total = 0;
    for (std::int64_t v : whole.hist) total += v;
    EXPECT_NEAR(double(total) / 67108864.0, whole.value.count, 1e-12);
    index_t masked = 0;
    for (index_t e = 0; e < p.mask.voxel_count(); ++e) masked += p.mask.data()[e] > 0.5f ? 1 : 0;
    EXPECT_NEAR(whole.value.count, double(masked), 1e-5 * double(masked));
  }
}

TEST(LossMattes, DeterministicAcrossRunsAndThreads) {
  const Pair p = make_pair({17, 16, 15}, 81, 32, ParzenWindow::CubicBSpline);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result a = run(p, true, whole_box(p.g));
  omp_set_num_threads(std::max(2, threads));
  const Result b = run(p, true, whole_box(p.g));
  omp_set_num_threads(threads);
  EXPECT_EQ(a.hist, b.hist);
  EXPECT_EQ(a.value.sum, b.value.sum);
  EXPECT_TRUE(bitwise_equal(a.grad, b.grad, whole_box(p.g)));
}

TEST(LossMattes, ConvenienceCallEqualsPhasesAndWritesOwnedOnly) {
  const Pair p = make_pair({12, 11, 10}, 91, 32, ParzenWindow::Box);
  const Box inner{{1, 2, 3}, {9, 7, 5}};
  const Result phases = run(p, true, inner);
  Volume<float> g(p.g);
  poison(g);
  double value[2];
  mattes_mi(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), inner, p.params,
            {value, 1, kLossTerms}, g.view());
  EXPECT_EQ(value[0], phases.value.sum);
  EXPECT_EQ(value[1], phases.value.count);
  const PoisonCheck pc = check_written(g, inner);
  EXPECT_EQ(pc.unwritten_inside, 0);
  EXPECT_EQ(pc.touched_outside, 0);
  EXPECT_TRUE(bitwise_equal(g, phases.grad, inner));
  for (index_t k = 3; k < 8; ++k)
    for (index_t j = 2; j < 9; ++j)
      for (index_t i = 1; i < 10; ++i)
        if (!(p.mask(i, j, k) > 0.5f)) {
          EXPECT_EQ(g(i, j, k), 0.0f);
        }
}

TEST(LossMattes, ClampedIntensitiesHaveZeroGradient) {
  Pair p = make_pair({10, 10, 10}, 95, 16, ParzenWindow::Box);
  // Narrow the moving range: voxels outside it are clamped to the ends.
  const float mid = 0.5f * (p.params.moving_min + p.params.moving_max);
  p.params.moving_min = mid - 0.1f;
  p.params.moving_max = mid + 0.1f;
  const Result r = run(p, false, whole_box(p.g));
  int outside = 0;
  for (index_t e = 0; e < r.grad.voxel_count(); ++e) {
    const float w = p.warped.data()[e];
    EXPECT_TRUE(std::isfinite(r.grad.data()[e]));
    if (w < p.params.moving_min - 1e-3f || w > p.params.moving_max + 1e-3f) {
      EXPECT_EQ(r.grad.data()[e], 0.0f);
      ++outside;
    }
  }
  EXPECT_GT(outside, 0);
  // A constant range (hi == lo): one bin, MI 0, zero gradient.
  p.params.moving_min = p.params.moving_max = mid;
  const Result c = run(p, false, whole_box(p.g));
  EXPECT_NEAR(c.value.sum, 0.0, 1e-9 * c.value.count);
  for (index_t e = 0; e < c.grad.voxel_count(); ++e) EXPECT_EQ(c.grad.data()[e], 0.0f);
}

TEST(LossMattes, IntensityRange) {
  const Pair p = make_pair({9, 8, 12}, 97, 32, ParzenWindow::Box);
  const Box all = whole_box(p.g);
  std::vector<double> part(std::size_t(all.size.z) * kRangeTerms);
  intensity_range(kCpu, p.warped.view(), {}, all, {part.data(), all.size.z, kRangeTerms});
  IntensityRange r = reduce_intensity_range(kCpu, {part.data(), all.size.z, kRangeTerms});
  EXPECT_EQ(r.min, *std::min_element(p.warped.data(), p.warped.data() + p.warped.voxel_count()));
  EXPECT_EQ(r.max, *std::max_element(p.warped.data(), p.warped.data() + p.warped.voxel_count()));
  // Masked, with one slice fully masked out.
  Volume<float> m = p.mask.clone();
  for (index_t j = 0; j < 8; ++j)
    for (index_t i = 0; i < 9; ++i) m(i, j, 5) = 0.0f;
  intensity_range(kCpu, p.warped.view(), m.view(), all, {part.data(), all.size.z, kRangeTerms});
  EXPECT_EQ(part[5 * 2], std::numeric_limits<double>::infinity());
  EXPECT_EQ(part[5 * 2 + 1], -std::numeric_limits<double>::infinity());
  r = reduce_intensity_range(kCpu, {part.data(), all.size.z, kRangeTerms});
  double lo = 1e30, hi = -1e30;
  for (index_t e = 0; e < m.voxel_count(); ++e)
    if (m.data()[e] > 0.5f) {
      lo = std::min(lo, double(p.warped.data()[e]));
      hi = std::max(hi, double(p.warped.data()[e]));
    }
  EXPECT_EQ(r.min, lo);
  EXPECT_EQ(r.max, hi);
  EXPECT_FALSE(r.empty());
}

TEST(LossMattes, RejectsBadArguments) {
  Pair p = make_pair({8, 8, 8}, 99, 32, ParzenWindow::Box);
  std::vector<std::int64_t> h(32 * 32);
  const Box all = whole_box(p.g);
  MattesParams bad = p.params;
  bad.bins = 4;
  EXPECT_THROW(mattes_fixed_axis(bad), Error);
  bad.bins = kMattesMaxBins + 1;
  EXPECT_THROW(mattes_moving_axis(bad), Error);
  bad = p.params;
  bad.moving_min = bad.moving_max + 1.0f;
  EXPECT_THROW(mattes_histogram(kCpu, p.fixed.view(), p.warped.view(), {}, all, bad, {h.data(), 32}),
               Error);
  EXPECT_THROW(mattes_histogram(kCpu, p.fixed.view(), p.warped.view(), {}, all, p.params, {h.data(), 16}),
               Error);
  double value[2];
  EXPECT_THROW(mattes_table(kCpu, {h.data(), 32}, p.params, {}, {value, 2, kLossTerms}), Error);
}

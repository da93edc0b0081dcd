// LNCC loss (CPU): against a naive double-precision reference (each window summed directly, the
// gradient summed window by window), central finite differences of the loss sum, windows clipped
// at the grid edge, masks, slab-and-stitch and block decomposition (bitwise), determinism across
// thread counts, the ANTs approximation, bad arguments.
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
};

Pair make_pair(Index3 size, std::uint64_t seed) {
  Pair p;
  p.g = make_geometry(size);
  p.fixed = textured(p.g, seed, 1.0);
  const Volume<float> other = textured(p.g, seed + 7, 0.5);
  p.warped = Volume<float>(p.g);
  for (index_t e = 0; e < p.warped.voxel_count(); ++e)
    p.warped.data()[e] = 0.7f * p.fixed.data()[e] + 0.5f * other.data()[e];
  p.mask = random_smooth_volume(p.g, seed + 3, 1.0, 0.4);
  return p;
}

LnccParams box(int r, LnccGradient gradient = LnccGradient::Exact) {
  LnccParams q;
  q.window = LnccWindow::Box;
  q.radius = r;
  q.gradient = gradient;
  return q;
}

LnccParams gaussian(double sigma, double truncation, LnccGradient gradient = LnccGradient::Exact) {
  LnccParams q;
  q.window = LnccWindow::Gaussian;
  q.sigma = sigma;
  q.truncation = truncation;
  q.gradient = gradient;
  return q;
}

std::string describe(const LnccParams& q) {
  return (q.window == LnccWindow::Box ? "box r=" + std::to_string(q.radius)
                                      : "gaussian sigma=" + std::to_string(q.sigma)) +
         (q.gradient == LnccGradient::Exact ? " exact" : " ants");
}

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

Result run(const Pair& p, const LnccParams& q, bool use_mask) {
  const Box all = whole_box(p.g);
  Result r{std::vector<double>(std::size_t(all.size.z) * kLossTerms), Volume<float>(p.g)};
  poison(r.grad);
  lncc_loss(kCpu, p.fixed.view(), p.warped.view(),
            use_mask ? p.mask.view() : VolumeView<const float>{}, all, q,
            {r.partials.data(), all.size.z, kLossTerms}, r.grad.view());
  return r;
}

double loss_sum(const Pair& p, const Volume<float>& warped, const LnccParams& q, bool use_mask) {
  const Box all = whole_box(p.g);
  std::vector<double> partials(std::size_t(all.size.z) * kLossTerms);
  lncc_loss(kCpu, p.fixed.view(), warped.view(), use_mask ? p.mask.view() : VolumeView<const float>{},
            all, q, {partials.data(), all.size.z, kLossTerms}, {});
  double s = 0;
  for (std::size_t i = 0; i < partials.size(); i += 2) s += partials[i];
  return s;
}

/// The naive reference: every window's sums directly in double, cc and its derivative written
/// out, the exact gradient accumulated window by window (ANTs: the centre's own term).
struct Naive {
  double sum = 0, count = 0;
  std::vector<double> grad;
};

Naive naive_lncc(const Pair& p, const LnccParams& q, bool use_mask) {
  const LnccTaps taps = lncc_window_taps(q);
  const int H = taps.radius;
  const Index3 n = p.g.size;
  Naive out;
  out.grad.assign(std::size_t(n.x * n.y * n.z), 0.0);
  auto lin = [&](index_t i, index_t j, index_t k) { return std::size_t((k * n.y + j) * n.x + i); };
  for (index_t k = 0; k < n.z; ++k)
    for (index_t j = 0; j < n.y; ++j)
      for (index_t i = 0; i < n.x; ++i) {
        if (use_mask && !(p.mask(i, j, k) > 0.5f)) continue;
        double wsum = 0, sf = 0, sw = 0, sff = 0, sww = 0, sfw = 0;
        for (int dz = -H; dz <= H; ++dz)
          for (int dy = -H; dy <= H; ++dy)
            for (int dx = -H; dx <= H; ++dx) {
              const index_t x = i + dx, y = j + dy, z = k + dz;
              if (x < 0 || y < 0 || z < 0 || x >= n.x || y >= n.y || z >= n.z) continue;
              const double kw = double(taps.w[H + dx]) * double(taps.w[H + dy]) * double(taps.w[H + dz]);
              const double f = p.fixed(x, y, z), m = p.warped(x, y, z);
              wsum += kw;
              sf += kw * f;
              sw += kw * m;
              sff += kw * f * f;
              sww += kw * m * m;
              sfw += kw * f * m;
            }
        const double mf = sf / wsum, mw = sw / wsum;
        const double cross = sfw / wsum - mf * mw;
        const double vf_raw = sff / wsum - mf * mf, vw_raw = sww / wsum - mw * mw;
        const double vf = std::max(vf_raw, 0.0), vw = std::max(vw_raw, 0.0);
        if (vf < q.min_variance_fixed || vw < q.min_variance_warped) {  // flat: cc = 0, no gradient
          out.count += 1;
          continue;
        }
        const double den = vf * vw + q.eps;
        const double cc = cross * cross / den;
        out.sum -= cc;
        out.count += 1;
        // d cc / d W(y) = k / n * [2 cross / den (F(y) - mf) - 2 cross^2 vf / den^2 (W(y) - mw)]
        const double alpha = 2 * cross / den;
        const double beta = vw_raw > 0 ? -2 * cross * cross * vf / (den * den) : 0.0;
        if (q.gradient == LnccGradient::AntsApproximation) {
          out.grad[lin(i, j, k)] =
              -(alpha * (p.fixed(i, j, k) - mf) + beta * (p.warped(i, j, k) - mw));
          continue;
        }
        for (int dz = -H; dz <= H; ++dz)
          for (int dy = -H; dy <= H; ++dy)
            for (int dx = -H; dx <= H; ++dx) {
              const index_t x = i + dx, y = j + dy, z = k + dz;
              if (x < 0 || y < 0 || z < 0 || x >= n.x || y >= n.y || z >= n.z) continue;
              const double kw = double(taps.w[H + dx]) * double(taps.w[H + dy]) * double(taps.w[H + dz]);
              out.grad[lin(x, y, z)] -=
                  kw / wsum * (alpha * (p.fixed(x, y, z) - mf) + beta * (p.warped(x, y, z) - mw));
            }
      }
  return out;
}

void expect_matches_naive(const Pair& p, const LnccParams& q, bool use_mask) {
  SCOPED_TRACE(describe(q) + (use_mask ? " masked" : ""));
  const Result r = run(p, q, use_mask);
  const Naive ref = naive_lncc(p, q, use_mask);
  const LossValue v = r.value();
  EXPECT_EQ(v.count, ref.count);
  EXPECT_GT(ref.count, 0);
  EXPECT_NEAR(v.sum, ref.sum, 1e-10 * std::abs(ref.sum));
  double scale = 0, err = 0;
  const Index3 n = p.g.size;
  for (index_t k = 0; k < n.z; ++k)
    for (index_t j = 0; j < n.y; ++j)
      for (index_t i = 0; i < n.x; ++i) {
        const double g = ref.grad[std::size_t((k * n.y + j) * n.x + i)];
        scale = std::max(scale, std::abs(g));
        err = std::max(err, std::abs(double(r.grad(i, j, k)) - g));
      }
  EXPECT_GT(scale, 0.0);
  EXPECT_LT(err, 1e-6 * scale) << "max |grad - naive| " << err << " of max " << scale;
}

/// Central differences of the loss sum at `count` random voxels plus the 8 corners.
void expect_matches_finite_differences(const Pair& p, const LnccParams& q, bool use_mask,
                                       std::uint32_t seed) {
  SCOPED_TRACE(describe(q) + (use_mask ? " masked" : ""));
  const Result r = run(p, q, use_mask);
  const Index3 n = p.g.size;
  double scale = 0;
  for (index_t e = 0; e < r.grad.voxel_count(); ++e) scale = std::max(scale, double(std::abs(r.grad.data()[e])));
  ASSERT_GT(scale, 0.0);
  std::vector<Index3> voxels;
  for (int c = 0; c < 8; ++c)
    voxels.push_back({(c & 1) ? n.x - 1 : 0, (c & 2) ? n.y - 1 : 0, (c & 4) ? n.z - 1 : 0});
  std::mt19937 rng(seed);
  for (int t = 0; t < 30; ++t)
    voxels.push_back({index_t(rng() % n.x), index_t(rng() % n.y), index_t(rng() % n.z)});
  Volume<float> w = p.warped.clone();
  int nonzero = 0;
  for (const Index3& v : voxels) {
    const float w0 = w(v.x, v.y, v.z);
    const float h = 2e-3f;
    w(v.x, v.y, v.z) = w0 + h;
    const double hp = double(w(v.x, v.y, v.z)) - double(w0);
    const double sp = loss_sum(p, w, q, use_mask);
    w(v.x, v.y, v.z) = w0 - h;
    const double hm = double(w0) - double(w(v.x, v.y, v.z));
    const double sm = loss_sum(p, w, q, use_mask);
    w(v.x, v.y, v.z) = w0;
    const double fd = (sp - sm) / (hp + hm);
    const double an = r.grad(v.x, v.y, v.z);
    EXPECT_NEAR(an, fd, 1e-3 * std::abs(fd) + 1e-5 * scale)
        << "voxel " << v.x << "," << v.y << "," << v.z;
    nonzero += std::abs(fd) > 1e-3 * scale ? 1 : 0;
  }
  EXPECT_GT(nonzero, 20);
}

}  // namespace

TEST(LossLncc, MatchesNaiveReference) {
  const Pair p = make_pair({12, 11, 13}, 101);
  for (const LnccParams& q : {box(1), box(2), box(3), gaussian(1.0, 3.0), gaussian(0.7, 2.0),
                              box(2, LnccGradient::AntsApproximation),
                              gaussian(1.0, 3.0, LnccGradient::AntsApproximation)})
    for (bool use_mask : {false, true}) expect_matches_naive(p, q, use_mask);
}

TEST(LossLncc, WindowLargerThanGridIsClipped) {
  const Pair p = make_pair({3, 4, 5}, 111);
  expect_matches_naive(p, box(3), false);
  expect_matches_naive(p, gaussian(1.5, 3.0), true);
}

TEST(LossLncc, GradientMatchesFiniteDifferences) {
  const Pair p = make_pair({14, 13, 12}, 121);
  expect_matches_finite_differences(p, box(1), false, 1);
  expect_matches_finite_differences(p, box(1), true, 2);
  expect_matches_finite_differences(p, box(2), false, 3);
  expect_matches_finite_differences(p, box(2), true, 4);
  expect_matches_finite_differences(p, gaussian(1.0, 3.0), false, 5);
  expect_matches_finite_differences(p, gaussian(1.0, 3.0), true, 6);
}

/// make_pair with flat regions: F constant where x < size.x / 3, W constant where y < size.y / 3.
Pair make_flat_pair(Index3 size, std::uint64_t seed) {
  Pair p = make_pair(size, seed);
  for (index_t k = 0; k < size.z; ++k)
    for (index_t j = 0; j < size.y; ++j)
      for (index_t i = 0; i < size.x; ++i) {
        if (i < size.x / 3) p.fixed(i, j, k) = 1.0f;
        if (j < size.y / 3) p.warped(i, j, k) = 0.7f;
      }
  return p;
}

TEST(LossLncc, VarianceFloorsMakeFlatWindowsCountZero) {
  // Windows below a floor count (the count is unchanged) with cc = 0 and no gradient.
  const Pair p = make_flat_pair({15, 14, 12}, 141);
  for (LnccParams q : {box(1), box(2), gaussian(1.0, 3.0), box(2, LnccGradient::AntsApproximation)}) {
    SCOPED_TRACE(describe(q));
    const double open = naive_lncc(p, q, false).sum;
    // Floors that cut a good share of the textured windows too (variances of these images are
    // about 0.01-0.3): against the naive reference, which applies the same rule in double.
    q.min_variance_fixed = 0.0625;
    q.min_variance_warped = 0.03125;
    const double cut = naive_lncc(p, q, false).sum;
    // (Cutting only removes terms -cc <= 0.) Measured: 2.6% of the box r=2 loss, more for r=1.
    EXPECT_GT(std::abs(cut - open), 0.01 * std::abs(open)) << "the floors cut too little to test";
    for (bool use_mask : {false, true}) expect_matches_naive(p, q, use_mask);
    // Central differences with floors that only cut the flat windows (a floor inside the
    // textured range makes the loss jump where a window crosses it).
    q.min_variance_fixed = 1e-4;
    q.min_variance_warped = 2e-4;
    if (q.gradient == LnccGradient::Exact) expect_matches_finite_differences(p, q, false, 11);
  }
  // A floor above every window: the loss is 0, every centre still counts, no gradient.
  LnccParams q = box(2);
  const LossValue open = run(p, q, false).value();
  q.min_variance_warped = 1e3;
  const Result shut = run(p, q, false);
  EXPECT_EQ(shut.value().sum, 0.0);
  EXPECT_EQ(shut.value().count, open.count);
  for (index_t e = 0; e < shut.grad.voxel_count(); ++e) ASSERT_EQ(shut.grad.data()[e], 0.0f) << e;
  // A NaN in the warped image still reaches the loss (a flat window's cc is 0 x NaN).
  Pair bad = make_flat_pair({15, 14, 12}, 141);
  bad.warped(7, 2, 6) = std::numeric_limits<float>::quiet_NaN();  // inside W's flat region
  q.min_variance_warped = 2e-4;
  EXPECT_TRUE(std::isnan(run(bad, q, false).value().sum));
}

TEST(LossLncc, AntsApproximationIsNotTheExactGradient) {
  // The approximation is a descent direction close to the exact gradient, but not equal to it:
  // this guards against the option silently computing the other one.
  const Pair p = make_pair({14, 13, 12}, 131);
  const Result exact = run(p, box(2), false);
  const Result ants = run(p, box(2, LnccGradient::AntsApproximation), false);
  double dot = 0, ne = 0, na = 0, diff = 0;
  for (index_t e = 0; e < exact.grad.voxel_count(); ++e) {
    const double a = exact.grad.data()[e], b = ants.grad.data()[e];
    dot += a * b;
    ne += a * a;
    na += b * b;
    diff = std::max(diff, std::abs(a - b));
  }
  EXPECT_GT(dot / std::sqrt(ne * na), 0.5);
  EXPECT_GT(diff, 1e-3 * std::sqrt(ne / double(exact.grad.voxel_count())));
  EXPECT_EQ(exact.partials, ants.partials);  // the value does not depend on the gradient option
}

TEST(LossLncc, SlabsWithHaloStitchBitwise) {
  const Pair p = make_pair({13, 12, 23}, 141);
  for (const LnccParams& q : {box(2), gaussian(1.0, 3.0), box(1, LnccGradient::AntsApproximation)})
    for (bool use_mask : {false, true}) {
      SCOPED_TRACE(describe(q) + (use_mask ? " masked" : ""));
      const Result whole = run(p, q, use_mask);
      Volume<float> stitched(p.g);
      poison(stitched);
      std::vector<double> partials;
      for (const Box& slab : z_slabs(p.g.size, 3)) {
        const Box in = lncc_input_box(slab, p.g.size, q), mb = lncc_mask_box(slab, p.g.size, q);
        const Volume<float> f = copy_box(p.fixed, in), w = copy_box(p.warped, in);
        const Volume<float> m = copy_box(p.mask, mb);
        Volume<float> g(p.g, slab, 1);
        poison(g);
        std::vector<double> part(std::size_t(slab.size.z) * kLossTerms);
        lncc_loss(kCpu, f.view(), w.view(), use_mask ? m.view() : VolumeView<const float>{}, slab, q,
                  {part.data(), slab.size.z, kLossTerms}, g.view());
        paste_box(stitched, g, slab);
        partials.insert(partials.end(), part.begin(), part.end());
      }
      EXPECT_TRUE(bitwise_equal(stitched, whole.grad, whole_box(p.g)));
      ASSERT_EQ(partials.size(), whole.partials.size());
      for (std::size_t s = 0; s < partials.size(); ++s) EXPECT_EQ(partials[s], whole.partials[s]) << s;
    }
}

TEST(LossLncc, BlocksStitchBitwise) {
  // A 2 x 2 x 2 block decomposition (owned boxes split along every axis).
  const Pair p = make_pair({15, 14, 13}, 151);
  const LnccParams q = box(2);
  const Result whole = run(p, q, true);
  Volume<float> stitched(p.g);
  poison(stitched);
  LossValue total;
  const index_t sx[3] = {0, 7, 15}, sy[3] = {0, 6, 14}, sz[3] = {0, 8, 13};
  for (int bz = 0; bz < 2; ++bz)
    for (int by = 0; by < 2; ++by)
      for (int bx = 0; bx < 2; ++bx) {
        const Box owned{{sx[bx], sy[by], sz[bz]},
                        {sx[bx + 1] - sx[bx], sy[by + 1] - sy[by], sz[bz + 1] - sz[bz]}};
        const Box in = lncc_input_box(owned, p.g.size, q), mb = lncc_mask_box(owned, p.g.size, q);
        const Volume<float> f = copy_box(p.fixed, in), w = copy_box(p.warped, in), m = copy_box(p.mask, mb);
        Volume<float> g(p.g, owned, 1);
        std::vector<double> part(std::size_t(owned.size.z) * kLossTerms);
        lncc_loss(kCpu, f.view(), w.view(), m.view(), owned, q,
                  {part.data(), owned.size.z, kLossTerms}, g.view());
        paste_box(stitched, g, owned);
        for (std::size_t s = 0; s < part.size(); s += 2) {
          total.sum += part[s];
          total.count += part[s + 1];
        }
      }
  EXPECT_TRUE(bitwise_equal(stitched, whole.grad, whole_box(p.g)));
  EXPECT_EQ(total.count, whole.value().count);
  EXPECT_NEAR(total.sum, whole.value().sum, 1e-12 * std::abs(whole.value().sum));
}

TEST(LossLncc, DeterministicAcrossRunsAndThreads) {
  const Pair p = make_pair({20, 35, 37}, 161);  // several tiles along y and z
  const int threads = omp_get_max_threads();
  for (const LnccParams& q : {box(2), gaussian(1.2, 3.0)}) {
    omp_set_num_threads(1);
    const Result a = run(p, q, true);
    omp_set_num_threads(std::max(2, threads));
    const Result b = run(p, q, true);
    const Result c = run(p, q, true);
    EXPECT_TRUE(bitwise_equal(a.grad, b.grad, whole_box(p.g)));
    EXPECT_TRUE(bitwise_equal(b.grad, c.grad, whole_box(p.g)));
    EXPECT_EQ(a.partials, b.partials);
    EXPECT_EQ(b.partials, c.partials);
  }
  omp_set_num_threads(threads);
}

TEST(LossLncc, ValueOnlyAgreesAndOwnedBoxOnlyIsWritten) {
  const Pair p = make_pair({12, 12, 12}, 171);
  const Result r = run(p, box(2), true);
  const Box all = whole_box(p.g);
  std::vector<double> partials(std::size_t(all.size.z) * kLossTerms);
  lncc_loss(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), all, box(2),
            {partials.data(), all.size.z, kLossTerms}, {});
  EXPECT_EQ(partials, r.partials);
  const Box inner{{2, 3, 4}, {6, 5, 4}};
  Volume<float> g(p.g);
  poison(g);
  lncc_loss(kCpu, p.fixed.view(), p.warped.view(), p.mask.view(), inner, box(2), {}, g.view());
  const PoisonCheck pc = check_written(g, inner);
  EXPECT_EQ(pc.unwritten_inside, 0);
  EXPECT_EQ(pc.touched_outside, 0);
  EXPECT_TRUE(bitwise_equal(g, r.grad, inner));
}

TEST(LossLncc, RejectsBadArguments) {
  const Pair p = make_pair({12, 12, 12}, 181);
  const Box slab{{0, 0, 4}, {12, 12, 4}};
  Volume<float> g(p.g);
  // Inputs without the 2H halo.
  const Volume<float> f = copy_box(p.fixed, grow_box(slab, 2, p.g.size)),
                      w = copy_box(p.warped, grow_box(slab, 2, p.g.size));
  EXPECT_THROW(lncc_loss(kCpu, f.view(), w.view(), {}, slab, box(2), {}, g.view()), Error);
  // ...which is enough for the ANTs gradient and for the value only.
  EXPECT_NO_THROW(lncc_loss(kCpu, f.view(), w.view(), {}, slab,
                            box(2, LnccGradient::AntsApproximation), {}, g.view()));
  std::vector<double> part(4 * kLossTerms);
  EXPECT_NO_THROW(lncc_loss(kCpu, f.view(), w.view(), {}, slab, box(2),
                            {part.data(), 4, kLossTerms}, {}));
  EXPECT_THROW(lncc_window_radius(box(0)), Error);
  EXPECT_THROW(lncc_window_radius(box(kLnccMaxRadius + 1)), Error);
  EXPECT_THROW(lncc_window_radius(gaussian(3.0, 3.0)), Error);
  EXPECT_EQ(lncc_window_radius(gaussian(1.0, 3.0)), 3);
  LnccParams bad_eps = box(1);
  bad_eps.eps = 0.0;
  EXPECT_THROW(lncc_loss(kCpu, p.fixed.view(), p.warped.view(), {}, whole_box(p.g), bad_eps, {},
                         g.view()),
               Error);
  LnccParams bad_floor = box(1);
  bad_floor.min_variance_warped = -1.0;
  EXPECT_THROW(lncc_loss(kCpu, p.fixed.view(), p.warped.view(), {}, whole_box(p.g), bad_floor, {},
                         g.view()),
               Error);
}

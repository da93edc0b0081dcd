// The losses on CUDA against the CPU reference, on fresh random inputs (never zeros): loss values
// (relative error < 1e-5), gradients (normwise relative error < 1e-4), Mattes histograms
// (exactly equal), the gradient fully written on the owned box and nowhere else (NaN poison),
// slabs held in separate allocations with their halos, and determinism of repeated runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/memory.hpp"
#include "cuda/loss.hpp"
#include "gigareg/ops/loss.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();

#define REQUIRE_CUDA()                                        \
  do {                                                        \
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";  \
  } while (0)

/// A device buffer of T, freed on scope exit.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count)
      : count_(count),
        data_(static_cast<T*>(allocate_bytes(count * sizeof(T), MemorySpace::Device, "test"))) {}
  ~DeviceBuffer() { free_bytes(data_, MemorySpace::Device); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* data() { return data_; }
  std::vector<T> host() const {
    std::vector<T> h(count_);
    copy_bytes(h.data(), MemorySpace::Host, data_, MemorySpace::Device, count_ * sizeof(T));
    return h;
  }

 private:
  std::size_t count_;
  T* data_;
};

struct Pair {
  Geometry g;
  Volume<float> fixed, warped, mask;
};

Pair make_pair(Index3 size, std::uint64_t seed, double offset = 1.0) {
  Pair p;
  p.g = make_geometry(size);
  p.fixed = textured(p.g, seed, offset);
  const Volume<float> other = textured(p.g, seed + 7, 0.5);
  p.warped = Volume<float>(p.g);
  for (index_t e = 0; e < p.warped.voxel_count(); ++e)
    p.warped.data()[e] = 0.7f * p.fixed.data()[e] + 0.5f * other.data()[e];
  p.mask = random_smooth_volume(p.g, seed + 3, 1.0, 0.4);
  return p;
}

/// sqrt(sum (a - b)^2 / sum b^2) over `box`.
double norm_rel_error(const Volume<float>& a, const Volume<float>& ref, const Box& box) {
  double d = 0, n = 0;
  for (index_t k = box.lo.z; k < box.hi().z; ++k)
    for (index_t j = box.lo.y; j < box.hi().y; ++j)
      for (index_t i = box.lo.x; i < box.hi().x; ++i) {
        const double x = a(i, j, k), y = ref(i, j, k);
        d += (x - y) * (x - y);
        n += y * y;
      }
  if (!std::isfinite(d)) return std::numeric_limits<double>::infinity();
  return n > 0 ? std::sqrt(d / n) : std::sqrt(d);
}

void expect_partials_close(const std::vector<double>& gpu, const std::vector<double>& cpu, double tol) {
  ASSERT_EQ(gpu.size(), cpu.size());
  double sg = 0, sc = 0, cg = 0, cc = 0;
  for (std::size_t s = 0; s < gpu.size(); s += 2) {
    EXPECT_NEAR(gpu[s], cpu[s], tol * std::max(1.0, std::abs(cpu[s]))) << "slice " << s / 2;
    EXPECT_EQ(gpu[s + 1], cpu[s + 1]) << "slice " << s / 2;
    sg += gpu[s];
    sc += cpu[s];
    cg += gpu[s + 1];
    cc += cpu[s + 1];
  }
  EXPECT_NEAR(sg, sc, tol * std::abs(sc));
  EXPECT_EQ(cg, cc);
  EXPECT_GT(cc, 0);
}

void expect_written_exactly(const Volume<float>& grad, const Box& owned) {
  const PoisonCheck pc = check_written(grad, owned);
  EXPECT_EQ(pc.unwritten_inside, 0);
  EXPECT_EQ(pc.touched_outside, 0);
}

// ---- LNCC
LnccParams box(int r, LnccGradient gradient = LnccGradient::Exact) {
  LnccParams q;
  q.radius = r;
  q.gradient = gradient;
  return q;
}
LnccParams gaussian(double sigma, LnccGradient gradient = LnccGradient::Exact) {
  LnccParams q;
  q.window = LnccWindow::Gaussian;
  q.sigma = sigma;
  q.gradient = gradient;
  return q;
}
std::string describe(const LnccParams& q, bool use_mask) {
  return (q.window == LnccWindow::Box ? "box r=" + std::to_string(q.radius)
                                      : "gaussian sigma=" + std::to_string(q.sigma)) +
         (q.gradient == LnccGradient::Exact ? " exact" : " ants") + (use_mask ? " masked" : "");
}

/// Runs LNCC for `owned` with inputs cut to the op's input box (separate allocations) on the
/// given backend; the gradient is a NaN-poisoned whole-grid volume.
struct LnccRun {
  std::vector<double> partials;
  Volume<float> grad;
};
LnccRun run_lncc(const Context& ctx, const Pair& p, const LnccParams& q, bool use_mask,
                 const Box& owned) {
  const MemorySpace space = ctx.memory_space();
  const Box in = lncc_input_box(owned, p.g.size, q), mb = lncc_mask_box(owned, p.g.size, q);
  const Volume<float> f = copy_box(p.fixed, in).to(space), w = copy_box(p.warped, in).to(space);
  const Volume<float> m = copy_box(p.mask, mb).to(space);
  Volume<float> poisoned(p.g);
  poison(poisoned);
  Volume<float> g = poisoned.to(space);
  const std::size_t n = std::size_t(owned.size.z) * kLossTerms;
  LnccRun r;
  if (ctx.backend == Backend::Cpu) {
    r.partials.resize(n);
    lncc_loss(ctx, f.view(), w.view(), use_mask ? m.view() : VolumeView<const float>{}, owned, q,
              {r.partials.data(), owned.size.z, kLossTerms}, g.view());
  } else {
    DeviceBuffer<double> d(n);
    lncc_loss(ctx, f.view(), w.view(), use_mask ? m.view() : VolumeView<const float>{}, owned, q,
              {d.data(), owned.size.z, kLossTerms}, g.view());
    r.partials = d.host();
  }
  r.grad = g.to(MemorySpace::Host);
  return r;
}

void expect_lncc_agrees(const Pair& p, const LnccParams& q, bool use_mask, const Box& owned) {
  SCOPED_TRACE(describe(q, use_mask));
  const LnccRun c = run_lncc(kCpu, p, q, use_mask, owned);
  const LnccRun g = run_lncc(kGpu, p, q, use_mask, owned);
  expect_partials_close(g.partials, c.partials, 1e-5);
  expect_written_exactly(g.grad, owned);
  const double e = norm_rel_error(g.grad, c.grad, owned);
  EXPECT_LT(e, 1e-4) << "normwise relative gradient error";
  EXPECT_LT(max_rel_error(g.grad, c.grad, owned), 1e-3);
}

// ---- Mattes
struct MiPair {
  Pair p;
  MattesParams params;
};
MiPair make_mi_pair(Index3 size, std::uint64_t seed, int bins, ParzenWindow fw) {
  MiPair m{make_pair(size, seed), {}};
  auto range = [](const Volume<float>& v, float& lo, float& hi) {
    lo = *std::min_element(v.data(), v.data() + v.voxel_count());
    hi = *std::max_element(v.data(), v.data() + v.voxel_count());
  };
  range(m.p.fixed, m.params.fixed_min, m.params.fixed_max);
  range(m.p.warped, m.params.moving_min, m.params.moving_max);
  m.params.bins = bins;
  m.params.fixed_window = fw;
  return m;
}

struct MiRun {
  std::vector<std::int64_t> hist;
  double value[2];
  Volume<float> grad;
};
MiRun run_mi(const Context& ctx, const MiPair& m, bool use_mask, const Box& owned) {
  const MemorySpace space = ctx.memory_space();
  const int n = m.params.bins;
  const std::size_t cells = std::size_t(n) * n;
  const Volume<float> f = copy_box(m.p.fixed, owned).to(space), w = copy_box(m.p.warped, owned).to(space);
  const Volume<float> mk = copy_box(m.p.mask, owned).to(space);
  const VolumeView<const float> mv = use_mask ? mk.view() : VolumeView<const float>{};
  Volume<float> poisoned(m.p.g);
  poison(poisoned);
  Volume<float> g = poisoned.to(space);
  MiRun r;
  if (ctx.backend == Backend::Cpu) {
    r.hist.resize(cells);
    std::vector<float> table(cells);
    mattes_histogram(ctx, f.view(), w.view(), mv, owned, m.params, {r.hist.data(), n});
    mattes_table(ctx, {r.hist.data(), n}, m.params, {table.data(), n}, {r.value, 1, kLossTerms});
    mattes_gradient(ctx, f.view(), w.view(), mv, owned, m.params, {table.data(), n}, g.view());
  } else {
    DeviceBuffer<std::int64_t> h(cells);
    DeviceBuffer<float> table(cells);
    DeviceBuffer<double> value(2);
    mattes_histogram(ctx, f.view(), w.view(), mv, owned, m.params, {h.data(), n});
    mattes_table(ctx, {h.data(), n}, m.params, {table.data(), n}, {value.data(), 1, kLossTerms});
    mattes_gradient(ctx, f.view(), w.view(), mv, owned, m.params, {table.data(), n}, g.view());
    r.hist = h.host();
    const std::vector<double> v = value.host();
    r.value[0] = v[0];
    r.value[1] = v[1];
  }
  r.grad = g.to(MemorySpace::Host);
  return r;
}

void expect_mi_agrees(const MiPair& m, bool use_mask, const Box& owned) {
  SCOPED_TRACE(std::to_string(m.params.bins) + " bins, " +
               (m.params.fixed_window == ParzenWindow::Box ? "box" : "cubic") + " fixed" +
               (use_mask ? ", masked" : ""));
  const MiRun c = run_mi(kCpu, m, use_mask, owned);
  const MiRun g = run_mi(kGpu, m, use_mask, owned);
  EXPECT_EQ(g.hist, c.hist) << "the fixed-point histograms differ";
  EXPECT_EQ(g.value[1], c.value[1]);
  EXPECT_NEAR(g.value[0], c.value[0], 1e-5 * std::abs(c.value[0]));
  EXPECT_LT(c.value[0], 0.0);
  expect_written_exactly(g.grad, owned);
  EXPECT_LT(norm_rel_error(g.grad, c.grad, owned), 1e-4);
}

}  // namespace

TEST(LossCuda, MseMatchesCpu) {
  REQUIRE_CUDA();
  const Pair p = make_pair({37, 29, 21}, 1);
  const Box owned{{3, 2, 4}, {31, 25, 15}};
  for (bool use_mask : {false, true}) {
    SCOPED_TRACE(use_mask ? "masked" : "no mask");
    std::vector<double> pc(std::size_t(owned.size.z) * kLossTerms);
    Volume<float> gc(p.g);
    poison(gc);
    mse_loss(kCpu, p.fixed.view(), p.warped.view(), use_mask ? p.mask.view() : VolumeView<const float>{},
             owned, {pc.data(), owned.size.z, kLossTerms}, gc.view());
    const Volume<float> f = p.fixed.to(MemorySpace::Device), w = p.warped.to(MemorySpace::Device),
                        m = p.mask.to(MemorySpace::Device);
    Volume<float> poisoned(p.g);
    poison(poisoned);
    Volume<float> gd = poisoned.to(MemorySpace::Device);
    DeviceBuffer<double> pd(pc.size());
    mse_loss(kGpu, f.view(), w.view(), use_mask ? m.view() : VolumeView<const float>{}, owned,
             {pd.data(), owned.size.z, kLossTerms}, gd.view());
    const LossValue v = reduce_loss(kGpu, {pd.data(), owned.size.z, kLossTerms});
    const Volume<float> gh = gd.to(MemorySpace::Host);
    expect_partials_close(pd.host(), pc, 1e-5);
    EXPECT_NEAR(v.value(), reduce_loss(kCpu, {pc.data(), owned.size.z, kLossTerms}).value(), 1e-5 * v.value());
    expect_written_exactly(gh, owned);
    EXPECT_LT(norm_rel_error(gh, gc, owned), 1e-6);
  }
}

TEST(LossCuda, LnccBoxWindowsMatchCpu) {
  REQUIRE_CUDA();
  const Pair p = make_pair({37, 29, 33}, 11);
  const Box all = whole_box(p.g);
  for (int r : {1, 2, 3, 4})
    for (bool use_mask : {false, true}) expect_lncc_agrees(p, box(r), use_mask, all);
}

TEST(LossCuda, LnccGaussianAndAntsMatchCpu) {
  REQUIRE_CUDA();
  const Pair p = make_pair({35, 26, 30}, 21);
  const Box all = whole_box(p.g);
  expect_lncc_agrees(p, gaussian(1.0), false, all);
  expect_lncc_agrees(p, gaussian(1.5), true, all);    // H = 5
  expect_lncc_agrees(p, gaussian(2.6), false, all);   // H = 8, the largest radius
  expect_lncc_agrees(p, box(2, LnccGradient::AntsApproximation), true, all);
  expect_lncc_agrees(p, gaussian(1.0, LnccGradient::AntsApproximation), false, all);
}

TEST(LossCuda, LnccSlabsWithHalosMatchCpu) {
  REQUIRE_CUDA();
  // Slabs and a block held in separate allocations with exactly their input boxes: a read
  // outside the halo would read memory that belongs to nobody (or to another allocation).
  const Pair p = make_pair({40, 34, 38}, 31, 100.0);  // a large mean: the shift matters
  for (const Box& slab : z_slabs(p.g.size, 3)) expect_lncc_agrees(p, box(2), true, slab);
  expect_lncc_agrees(p, box(3), false, Box{{5, 3, 9}, {27, 22, 17}});
  expect_lncc_agrees(p, gaussian(1.2), true, Box{{0, 10, 20}, {40, 20, 18}});
}

TEST(LossCuda, LnccBoxSchedulesMatchCpu) {
  REQUIRE_CUDA();
  // Each block of the box kernel takes one segment: a z chunk of one tile, or (tile mode) a
  // whole tile, or a z part of one of the tiles left for the end. Forced schedules on 9 tiles
  // (3 x 3; the interior box has 2 x 2): chunks of 8 planes and of all planes; 4 resident blocks
  // and 3 parts (8 whole tiles, the last in 3 parts; the interior box: all 4 in parts); 2
  // resident blocks, 1 part; 16 resident blocks, 7 parts (capped at 5: none under 8 planes). On
  // the whole grid and on the interior box (tiles at the box's edges, planes not from 0).
  const Pair p = make_pair({70, 53, 45}, 51, 50.0);
  const Box inner{{3, 4, 5}, {61, 45, 33}};
  struct Forced {
    index_t parts, zchunk, resident;
  };
  for (const Forced f : {Forced{0, 8, 0}, Forced{0, 64, 0}, Forced{3, 0, 4}, Forced{1, 0, 2},
                         Forced{7, 0, 16}}) {
    SCOPED_TRACE("parts " + std::to_string(f.parts) + ", zchunk " + std::to_string(f.zchunk) +
                 ", resident " + std::to_string(f.resident));
    cuda::lncc_box_schedule_for_testing(f.parts, f.zchunk, f.resident);
    expect_lncc_agrees(p, box(2), false, whole_box(p.g));
    expect_lncc_agrees(p, box(2), true, inner);
    expect_lncc_agrees(p, box(1), true, inner);
  }
  cuda::lncc_box_schedule_for_testing(0, 0, 0);
}

TEST(LossCuda, LnccStagedInputsMatchRegisterPath) {
  REQUIRE_CUDA();
  // The 5^3 box kernel stages its inputs through TMA where every row and plane of F and W starts
  // at a 16-byte boundary and so do the tiles' input boxes (x extents of 72 and 68 from column 0
  // here), else it loads them into registers (an owned box from column 3). Both must give
  // bit-identical results (same arithmetic in the same order) and match the CPU: on the whole
  // grid (border tiles read zeros outside the views) and on inner boxes (inputs read only inside
  // the halo, planes not from 0), with and without a mask, under the cost model's schedule,
  // chunks of 8 planes and tile mode with parts.
  const Pair p = make_pair({72, 53, 45}, 71, 50.0);
  struct Case {
    Box owned;
    bool staged;
    const char* what;
  };
  const Case cases[] = {{whole_box(p.g), true, "whole grid"},
                        {Box{{4, 4, 5}, {60, 45, 33}}, true, "inner box"},
                        {Box{{3, 4, 5}, {61, 45, 33}}, false, "inner box from column 3"}};
  struct Forced {
    index_t parts, zchunk, resident;
  };
  for (const Forced f : {Forced{0, 0, 0}, Forced{0, 8, 0}, Forced{3, 0, 4}}) {
    cuda::lncc_box_schedule_for_testing(f.parts, f.zchunk, f.resident);
    for (bool use_mask : {false, true})
      for (const Case& c : cases) {
        SCOPED_TRACE("parts " + std::to_string(f.parts) + ", zchunk " + std::to_string(f.zchunk) +
                     ", " + describe(box(2), use_mask) + ", " + c.what);
        const index_t before = cuda::lncc_box_staged_launches_for_testing();
        const LnccRun staged = run_lncc(kGpu, p, box(2), use_mask, c.owned);
        EXPECT_EQ(cuda::lncc_box_staged_launches_for_testing(), before + (c.staged ? 1 : 0))
            << "the staged kernel ran where it should not, or did not run where it should";
        cuda::lncc_box_staging_for_testing(false);
        const LnccRun registers = run_lncc(kGpu, p, box(2), use_mask, c.owned);
        cuda::lncc_box_staging_for_testing(true);
        EXPECT_EQ(cuda::lncc_box_staged_launches_for_testing(), before + (c.staged ? 1 : 0));
        EXPECT_EQ(staged.partials, registers.partials);
        EXPECT_EQ(std::memcmp(staged.grad.data(), registers.grad.data(),
                              std::size_t(p.g.voxel_count()) * sizeof(float)),
                  0)
            << "staged and register gradients differ";
        expect_lncc_agrees(p, box(2), use_mask, c.owned);
      }
  }
  cuda::lncc_box_schedule_for_testing(0, 0, 0);
}

TEST(LossCuda, LnccLongSegmentsKeepPrecision) {
  REQUIRE_CUDA();
  // A block running the whole z extent of a tile carries its running z sums (float, over
  // shifted intensities) through all 1400 planes instead of at most 64: the rounding they
  // accumulate must stay within the tolerances against the double CPU reference. Smooth
  // intensities around a large mean (local variances small against the squares summed).
  const Pair p = make_pair({40, 30, 1400}, 61, 100.0);
  const Box all = whole_box(p.g);
  const LnccRun c = run_lncc(kCpu, p, box(2), false, all);
  double errors[2];
  for (int whole : {0, 1}) {
    cuda::lncc_box_schedule_for_testing(whole ? 1 : 0, whole ? 0 : 64, whole ? 1 : 0);
    const LnccRun g = run_lncc(kGpu, p, box(2), false, all);
    SCOPED_TRACE(whole ? "whole tiles" : "chunks of 64 planes");
    expect_partials_close(g.partials, c.partials, 1e-5);
    errors[whole] = norm_rel_error(g.grad, c.grad, all);
    EXPECT_LT(errors[whole], 1e-4);
    EXPECT_LT(max_rel_error(g.grad, c.grad, all), 1e-3);
  }
  cuda::lncc_box_schedule_for_testing(0, 0, 0);
  std::printf("normwise gradient error: chunks of 64 planes %.3g, whole tiles %.3g\n", errors[0],
              errors[1]);
}

/// Two "brains" on a zero background, as at a coarse pyramid level of an unaligned pair: textured
/// intensities of about 20..250 inside ellipsoids whose edges are smooth steps (blurred: the
/// background far from them is tiny but not zero), the moving one offset by a few voxels.
Pair make_brains(Index3 size, std::uint64_t seed) {
  Pair p;
  p.g = make_geometry(size);
  const Volume<float> tf = textured(p.g, seed, 0.0), tw = textured(p.g, seed + 5, 0.0);
  p.fixed = Volume<float>(p.g);
  p.warped = Volume<float>(p.g);
  auto inside = [&](index_t i, index_t j, index_t k, double shift) {
    const double x = (i - 0.5 * size.x - shift) / (0.38 * size.x), y = (j - 0.5 * size.y) / (0.4 * size.y),
                 z = (k - 0.5 * size.z + 0.5 * shift) / (0.36 * size.z);
    const double d = (std::sqrt(x * x + y * y + z * z) - 1.0) * 0.38 * size.x;  // about voxels
    return 1.0 / (1.0 + std::exp(2.0 * d));
  };
  for (index_t k = 0; k < size.z; ++k)
    for (index_t j = 0; j < size.y; ++j)
      for (index_t i = 0; i < size.x; ++i) {
        p.fixed(i, j, k) = float(inside(i, j, k, 0.0) * (135.0 + 60.0 * tf(i, j, k)));
        p.warped(i, j, k) = float(inside(i, j, k, 5.0) * (135.0 + 40.0 * tf(i, j, k) + 20.0 * tw(i, j, k)));
      }
  p.mask = Volume<float>(p.g);
  p.mask.fill(1.0f);
  return p;
}

TEST(LossCuda, LnccFlatBackgroundMatchesCpuWithVarianceFloors) {
  REQUIRE_CUDA();
  // In a nearly flat window beside bright tissue the float window variances are rounding noise
  // (the sums run over intensities shifted by a tile constant): without a floor, cc there is
  // arbitrary (a registration's first loss was off by a factor of three on such a pair). With the
  // registration's floors, (0.01 x range)^2 on both images, CUDA agrees with the CPU within what
  // float sums of squared intensities allow near the floors (see the tolerances below).
  auto total = [](const std::vector<double>& partials) {
    double s = 0;
    for (std::size_t i = 0; i < partials.size(); i += 2) s += partials[i];
    return s;
  };
  // The box window with the exact gradient runs the fast kernel; Gaussian windows and ANTs'
  // approximation run the general one.
  for (LnccParams q : {box(2), gaussian(1.0), box(2, LnccGradient::AntsApproximation)}) {
    for (int floors : {0, 1}) {
      for (bool use_mask : {false, true}) {
        q.eps = 1e-12 * std::pow(250.0, 4);
        Pair p = make_brains({72, 80, 96}, 71);
        if (use_mask) p.mask = random_smooth_volume(p.g, 9, 1.0, 0.4);
        const Box all = whole_box(p.g);
        q.min_variance_fixed = q.min_variance_warped = floors ? 2.5 * 2.5 : 0.0;
        const LnccRun c = run_lncc(kCpu, p, q, use_mask, all), g = run_lncc(kGpu, p, q, use_mask, all);
        const double lc = total(c.partials), lg = total(g.partials);
        double worst_slice = 0, largest = 0;
        for (std::size_t i = 0; i < c.partials.size(); i += 2)
          largest = std::max(largest, std::abs(c.partials[i]));
        for (std::size_t i = 0; i < c.partials.size(); i += 2)
          worst_slice = std::max(worst_slice, std::abs(g.partials[i] - c.partials[i]) / largest);
        const double eg = norm_rel_error(g.grad, c.grad, all);
        std::printf("%s, %s%s: loss CPU %.8g CUDA %.8g (rel %.3g), worst slice %.3g of the "
                    "largest, gradient normwise %.3g\n",
                    describe(q, false).c_str(), floors ? "floors" : "no floors",
                    use_mask ? ", masked" : "", lc, lg, std::abs(lg - lc) / std::abs(lc),
                    worst_slice, eg);
        if (!floors) continue;
        SCOPED_TRACE(describe(q, use_mask));
        // Measured on the H100, box window, exact gradient: loss 4.4e-6 (masked 1.2e-5), worst
        // slice 1.9e-4 (5.8e-4) of the largest, gradient 9.7e-5 (1.7e-4); without floors 0.47
        // (0.23), 3.5 (1.7) and 0.17 (0.12). Gaussian: 9.8e-6, 6.3e-4, 3.1e-4 at most (without
        // floors 0.076); ANTs: 6.4e-7, 5.9e-6, 3.8e-5 (without floors 0.60).
        // Float sums of squared intensities (up to 250 from the tile's shift) carry an absolute
        // error of about 1e-2 in a window variance: relative 1e-3 at the floor (6.25), so the
        // windows just above it set these tolerances, not the 1e-5 / 1e-4 of random inputs.
        EXPECT_LT(std::abs(lg - lc), 1e-4 * std::abs(lc));
        EXPECT_LT(worst_slice, 3e-3);
        EXPECT_LT(eg, 1e-3);
        expect_written_exactly(g.grad, all);
      }
    }
  }
}

TEST(LossCuda, LnccValueOnlyAndDeterminism) {
  REQUIRE_CUDA();
  const Pair p = make_pair({33, 30, 28}, 41);
  const Box all = whole_box(p.g);
  const LnccRun a = run_lncc(kGpu, p, box(2), true, all);
  const LnccRun b = run_lncc(kGpu, p, box(2), true, all);
  EXPECT_TRUE(bitwise_equal(a.grad, b.grad, all));
  EXPECT_EQ(a.partials, b.partials);
  const Volume<float> f = p.fixed.to(MemorySpace::Device), w = p.warped.to(MemorySpace::Device),
                      m = p.mask.to(MemorySpace::Device);
  DeviceBuffer<double> d(std::size_t(all.size.z) * kLossTerms);
  lncc_loss(kGpu, f.view(), w.view(), m.view(), all, box(2), {d.data(), all.size.z, kLossTerms}, {});
  const LnccRun c = run_lncc(kCpu, p, box(2), true, all);
  expect_partials_close(d.host(), c.partials, 1e-5);
}

TEST(LossCuda, MattesMatchesCpuExactlyInTheHistogram) {
  REQUIRE_CUDA();
  for (ParzenWindow fw : {ParzenWindow::Box, ParzenWindow::CubicBSpline})
    for (bool use_mask : {false, true}) {
      const MiPair m = make_mi_pair({37, 31, 29}, 51, 32, fw);
      expect_mi_agrees(m, use_mask, Box{{2, 1, 3}, {33, 29, 24}});
    }
  // Bins that need more than 48 KiB of shared memory (opt-in path).
  expect_mi_agrees(make_mi_pair({30, 30, 30}, 53, 64, ParzenWindow::CubicBSpline), false,
                   whole_box(make_geometry({30, 30, 30})));
  expect_mi_agrees(make_mi_pair({30, 30, 30}, 55, 128, ParzenWindow::Box), true,
                   whole_box(make_geometry({30, 30, 30})));
}

TEST(LossCuda, MattesUniformRegionsAggregateExactly) {
  REQUIRE_CUDA();
  // Large constant regions put whole warps on the same bins (the aggregated path).
  MiPair m = make_mi_pair({40, 36, 20}, 61, 32, ParzenWindow::Box);
  for (index_t k = 0; k < 20; ++k)
    for (index_t j = 0; j < 36; ++j)
      for (index_t i = 0; i < 40; ++i)
        if (i < 24 || k < 6) {
          m.p.fixed(i, j, k) = m.params.fixed_min;
          m.p.warped(i, j, k) = 0.25f * m.params.moving_min + 0.75f * m.params.moving_max;
        }
  expect_mi_agrees(m, false, whole_box(m.p.g));
  expect_mi_agrees(m, true, whole_box(m.p.g));
}

TEST(LossCuda, MattesConvenienceAndDeterminism) {
  REQUIRE_CUDA();
  const MiPair m = make_mi_pair({32, 30, 28}, 71, 32, ParzenWindow::CubicBSpline);
  const Box all = whole_box(m.p.g);
  const MiRun phases = run_mi(kGpu, m, true, all);
  const MiRun again = run_mi(kGpu, m, true, all);
  EXPECT_EQ(phases.hist, again.hist);
  EXPECT_EQ(phases.value[0], again.value[0]);
  EXPECT_TRUE(bitwise_equal(phases.grad, again.grad, all));
  const Volume<float> f = m.p.fixed.to(MemorySpace::Device), w = m.p.warped.to(MemorySpace::Device),
                      mk = m.p.mask.to(MemorySpace::Device);
  Volume<float> g = Volume<float>(m.p.g, 1, MemorySpace::Device);
  DeviceBuffer<double> value(2);
  mattes_mi(kGpu, f.view(), w.view(), mk.view(), all, m.params, {value.data(), 1, kLossTerms}, g.view());
  const std::vector<double> v = value.host();
  EXPECT_EQ(v[0], phases.value[0]);
  EXPECT_EQ(v[1], phases.value[1]);
  EXPECT_TRUE(bitwise_equal(g.to(MemorySpace::Host), phases.grad, all));
}

TEST(LossCuda, IntensityRangeMatchesCpu) {
  REQUIRE_CUDA();
  const Pair p = make_pair({37, 29, 21}, 81);
  const Box owned{{1, 2, 3}, {35, 26, 17}};
  for (bool use_mask : {false, true}) {
    std::vector<double> pc(std::size_t(owned.size.z) * kRangeTerms);
    intensity_range(kCpu, p.warped.view(), use_mask ? p.mask.view() : VolumeView<const float>{}, owned,
                    {pc.data(), owned.size.z, kRangeTerms});
    const Volume<float> w = p.warped.to(MemorySpace::Device), m = p.mask.to(MemorySpace::Device);
    DeviceBuffer<double> pd(pc.size());
    intensity_range(kGpu, w.view(), use_mask ? m.view() : VolumeView<const float>{}, owned,
                    {pd.data(), owned.size.z, kRangeTerms});
    EXPECT_EQ(pd.host(), pc);
    const IntensityRange rg = reduce_intensity_range(kGpu, {pd.data(), owned.size.z, kRangeTerms});
    const IntensityRange rc = reduce_intensity_range(kCpu, {pc.data(), owned.size.z, kRangeTerms});
    EXPECT_EQ(rg.min, rc.min);
    EXPECT_EQ(rg.max, rc.max);
  }
}

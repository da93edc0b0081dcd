// Displacement-field ops on the CUDA backend against the CPU reference on fresh random inputs
// (relative error < 1e-5), outputs written exactly on the owned box (NaN-poisoned before the
// run), slice partials, z-slab stitching and determinism on the device. Skipped without a CUDA
// device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/field.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();
constexpr MemorySpace kDev = MemorySpace::Device;
constexpr MemorySpace kHost = MemorySpace::Host;

Affined mild_affine(const Geometry& g) {
  const Mat3d l = rotation(0.04, 0.07, -0.09) * Mat3d{{1.03, 0.02, 0.0, -0.01, 0.98, 0.03, 0.0, 0.01, 1.01}};
  const Vec3d c = g.index_to_physical({0.5 * double(g.size.x - 1), 0.5 * double(g.size.y - 1), 0.5 * double(g.size.z - 1)});
  return {l, c - l * c + Vec3d{0.6, -0.3, 0.45}};
}

Volume<float> poisoned_device(const Geometry& g, int components) {
  Volume<float> h(g, components);
  poison(h);
  return h.to(kDev);
}

Box interior(const Geometry& g) {
  return Box{{2, 1, 3}, {g.size.x - 5, g.size.y - 3, g.size.z - 4}};
}

void expect_written_exactly(const Volume<float>& v, const Box& owned, const char* what) {
  const PoisonCheck c = check_written(v, owned);
  EXPECT_EQ(c.unwritten_inside, 0) << what;
  EXPECT_EQ(c.touched_outside, 0) << what;
}

// Grids wider than a warp and with row counts that are not multiples of 8.
struct Fields {
  Geometry grid = oblique_geometry({37, 21, 13});
  Geometry u_grid = centered_like(grid, {34, 23, 12}, {1.2, 1.0, 1.5}, rotation(0.1, -0.2, 0.15));
  Volume<float> v = random_smooth_field(grid, 1, 2.0);
  Volume<float> u = random_smooth_field(u_grid, 2, 2.5);
  Volume<float> u_same = random_smooth_field(grid, 3, 1.5, 0.6);
  Volume<float> v_d = v.to(kDev), u_d = u.to(kDev), u_same_d = u_same.to(kDev);
};

}  // namespace

TEST(FieldCuda, ComposeAndResampleMatchCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Box owned = interior(f.grid);
  for (Boundary b : {Boundary::Zero, Boundary::Border})
    for (int variant = 0; variant < 3; ++variant) {  // identity, affine, resample (no v)
      Volume<float> cpu(f.grid, 3);
      Volume<float> gpu_d = poisoned_device(f.grid, 3);
      if (variant == 0) {
        compose_fields(kCpu, f.v.view(), f.grid, f.u.view(), f.u_grid, cpu.view(), owned, b);
        compose_fields(kGpu, f.v_d.view(), f.grid, f.u_d.view(), f.u_grid, gpu_d.view(), owned, b);
      } else if (variant == 1) {
        const Affined a = mild_affine(f.grid);
        compose_fields(kCpu, f.v.view(), f.grid, a, f.u.view(), f.u_grid, cpu.view(), owned, b);
        compose_fields(kGpu, f.v_d.view(), f.grid, a, f.u_d.view(), f.u_grid, gpu_d.view(), owned, b);
      } else {
        resample_field(kCpu, f.u.view(), f.u_grid, f.grid, cpu.view(), owned, b);
        resample_field(kGpu, f.u_d.view(), f.u_grid, f.grid, gpu_d.view(), owned, b);
      }
      const Volume<float> gpu = gpu_d.to(kHost);
      expect_written_exactly(gpu, owned, "compose out");
      EXPECT_LT(max_rel_error(gpu, cpu, owned), 1e-5) << "boundary " << int(b) << " variant " << variant;
    }
}

TEST(FieldCuda, ExpMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  for (int steps : {0, 1, 6}) {
    Volume<float> cpu(f.grid, 3);
    exp_field(kCpu, f.v.view(), f.grid, steps, cpu.view());
    Volume<float> gpu_d = poisoned_device(f.grid, 3);
    exp_field(kGpu, f.v_d.view(), f.grid, steps, gpu_d.view());
    const Volume<float> gpu = gpu_d.to(kHost);
    expect_written_exactly(gpu, whole_box(f.grid), "exp out");
    EXPECT_LT(max_rel_error(gpu, cpu, whole_box(f.grid)), 1e-5) << "steps " << steps;
  }
  // In place on the device.
  Volume<float> inplace_d = f.v.to(kDev), ref_d(f.grid, 3, kDev);
  exp_field(kGpu, f.v_d.view(), f.grid, 5, ref_d.view());
  exp_field(kGpu, inplace_d.view(), f.grid, 5, inplace_d.view());
  EXPECT_TRUE(bitwise_equal(inplace_d.to(kHost), ref_d.to(kHost), whole_box(f.grid)));
}

TEST(FieldCuda, InvertMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Box owned = interior(f.grid);
  const std::size_t np = std::size_t(owned.size.z) * 2;
  // Tolerance 0: every voxel runs all iterations on both backends and settles at float rounding,
  // so the results agree to rounding.
  InverseOptions opt;
  opt.iterations = 40;
  opt.tolerance = 0.0;
  for (bool with_init : {false, true}) {
    Volume<float> cpu(f.grid, 3);
    std::vector<double> rc(np);
    invert_field(kCpu, f.u_same.view(), f.grid, f.grid, cpu.view(), owned, opt,
                 with_init ? f.v.view() : VolumeView<const float>{}, {rc.data(), owned.size.z, 2});
    Volume<float> gpu_d = poisoned_device(f.grid, 3);
    Buffer<double> rg(np, kDev);
    const SlicePartials sp{rg.data(), owned.size.z, 2};
    invert_field(kGpu, f.u_same_d.view(), f.grid, f.grid, gpu_d.view(), owned, opt,
                 with_init ? f.v_d.view() : VolumeView<const float>{}, sp);
    const Volume<float> gpu = gpu_d.to(kHost);
    expect_written_exactly(gpu, owned, "inverse out");
    EXPECT_LT(max_rel_error(gpu, cpu, owned), 1e-5) << "init " << with_init;
    EXPECT_NEAR(max_over_slices(kGpu, sp, 0), max_over_slices(kCpu, {rc.data(), owned.size.z, 2}, 0), 1e-5);
  }
  // With a tolerance both converge everywhere and report it; inverse of a field on another grid.
  opt.tolerance = 1e-3;
  Buffer<double> rg(np, kDev);
  const SlicePartials sp{rg.data(), owned.size.z, 2};
  Volume<float> gpu_d = poisoned_device(f.grid, 3);  // initialised: the copy below reads it whole
  invert_field(kGpu, f.u_d.view(), f.u_grid, f.grid, gpu_d.view(), owned, opt, {}, sp);
  expect_written_exactly(gpu_d.to(kHost), owned, "inverse out (other grid)");
  Volume<float> cpu(f.grid, 3);
  invert_field(kCpu, f.u.view(), f.u_grid, f.grid, cpu.view(), owned, opt);
  EXPECT_LE(max_over_slices(kGpu, sp, 0), 1e-3);
  EXPECT_EQ(reduce_slices(kGpu, sp)[1], 0.0);
  EXPECT_LT(max_abs_diff(gpu_d.to(kHost), cpu, owned), 2e-3);
}

// ITK's damped inversion (SyN's per-iteration inversions) on the device against the CPU: the same
// number of updates and residuals (the mean's sum runs in another order: equal within rounding),
// the inverse within float rounding of a few updates; the boundary layer pinned exactly.
TEST(FieldCuda, DampedInverseMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Box whole = whole_box(f.grid);
  for (bool warm : {false, true}) {
    DampedInverseOptions opt;
    opt.iterations = 12;
    opt.mean_tolerance = 0;
    opt.max_tolerance = 0;  // run every update on both backends
    opt.pin_boundary = !warm;
    Volume<float> cpu = warm ? f.v.clone() : Volume<float>(f.grid, 3);
    if (!warm) std::memset(cpu.data(), 0, cpu.bytes());
    Volume<float> gpu_d = cpu.to(kDev);
    const DampedInverseReport rc = invert_field_damped(kCpu, f.u_same.view(), f.grid, cpu.view(), opt);
    Volume<float> scratch_d(f.grid, 3, kDev);
    const DampedInverseReport rg =
        invert_field_damped(kGpu, f.u_same_d.view(), f.grid, gpu_d.view(), opt, scratch_d.view());
    EXPECT_EQ(rg.iterations, rc.iterations);
    EXPECT_NEAR(rg.max_error, rc.max_error, 1e-5 * (1 + rc.max_error));
    EXPECT_NEAR(rg.mean_error, rc.mean_error, 1e-5 * (1 + rc.mean_error));
    const Volume<float> gpu = gpu_d.to(kHost);
    EXPECT_LT(max_abs_diff(gpu, cpu, whole), 1e-4) << "warm " << warm;
    if (!warm) {
      const Volume<float> zero(f.grid, 3);
      for (index_t k = 0; k < f.grid.size.z; ++k)
        for (index_t j = 0; j < f.grid.size.y; ++j)
          for (index_t i : {index_t(0), f.grid.size.x - 1})
            for (int c = 0; c < 3; ++c) ASSERT_EQ(gpu(i, j, k, c), 0.f);
    }
  }
  // With the default tolerances both stop after the same number of updates.
  Volume<float> cpu(f.grid, 3);
  std::memset(cpu.data(), 0, cpu.bytes());
  Volume<float> gpu_d = cpu.to(kDev);
  const DampedInverseReport rc = invert_field_damped(kCpu, f.u_same.view(), f.grid, cpu.view());
  const DampedInverseReport rg = invert_field_damped(kGpu, f.u_same_d.view(), f.grid, gpu_d.view());
  EXPECT_EQ(rg.iterations, rc.iterations);
  EXPECT_LT(max_abs_diff(gpu_d.to(kHost), cpu, whole), 1e-4);
}

TEST(FieldCuda, ZeroFieldBoundaryMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Box owned = interior(f.grid);
  for (const Box& box : {whole_box(f.grid), owned}) {
    Volume<float> cpu = f.v.clone();
    Volume<float> gpu_d = f.v_d.clone();
    zero_field_boundary(kCpu, cpu.view(), f.grid, box);
    zero_field_boundary(kGpu, gpu_d.view(), f.grid, box);
    EXPECT_TRUE(bitwise_equal(gpu_d.to(kHost), cpu, whole_box(f.grid)));
  }
}

TEST(FieldCuda, JacobianMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Volume<float> folding = random_smooth_field(f.grid, 4, 6.0);
  const Volume<float> folding_d = folding.to(kDev);
  const Box owned = interior(f.grid);
  Volume<float> cpu(f.grid);
  std::vector<double> nc(std::size_t(owned.size.z));
  jacobian_determinant(kCpu, folding.view(), f.grid, cpu.view(), owned, {nc.data(), owned.size.z, 1});
  Volume<float> gpu_d = poisoned_device(f.grid, 1);
  Buffer<double> ng(std::size_t(owned.size.z), kDev);
  const SlicePartials sp{ng.data(), owned.size.z, 1};
  jacobian_determinant(kGpu, folding_d.view(), f.grid, gpu_d.view(), owned, sp);
  const Volume<float> gpu = gpu_d.to(kHost);
  expect_written_exactly(gpu, owned, "det");
  EXPECT_LT(max_rel_error(gpu, cpu, owned), 1e-5);
  index_t near_zero = 0;
  for (index_t k = owned.lo.z; k < owned.hi().z; ++k)
    for (index_t j = owned.lo.y; j < owned.hi().y; ++j)
      for (index_t i = owned.lo.x; i < owned.hi().x; ++i) near_zero += std::abs(cpu(i, j, k)) < 1e-4f;
  const double count_cpu = reduce_slices(kCpu, {nc.data(), owned.size.z, 1})[0];
  EXPECT_GT(count_cpu, 0.0);
  EXPECT_LE(std::abs(reduce_slices(kGpu, sp)[0] - count_cpu), double(near_zero));
  // Count only (no determinant output).
  Buffer<double> ng2(std::size_t(owned.size.z), kDev);
  jacobian_determinant(kGpu, folding_d.view(), f.grid, {}, owned, {ng2.data(), owned.size.z, 1});
  EXPECT_EQ(std::memcmp(ng2.to_host().data(), ng.to_host().data(), ng.size() * sizeof(double)), 0);
}

// Device z-slabs with their halos stitch bitwise to the whole-volume device run (compose, invert
// with partials, Jacobian with partials); two whole runs are bitwise equal.
TEST(FieldCuda, SlabsStitchBitwiseAndDeterministic) {
  SKIP_WITHOUT_CUDA();
  const Fields f;
  const Box whole = whole_box(f.grid);
  const index_t nz = f.grid.size.z;
  InverseOptions opt;
  opt.iterations = 15;
  opt.tolerance = 1e-3;
  struct Result {
    Volume<float> comp, inv, det;
    std::vector<double> ip, dp;
  };
  auto run_whole = [&]() {
    Volume<float> comp_d(f.grid, 3, kDev), inv_d(f.grid, 3, kDev), det_d(f.grid, 1, kDev);
    Buffer<double> ip(std::size_t(nz) * 2, kDev), dp(std::size_t(nz), kDev);
    compose_fields(kGpu, f.v_d.view(), f.grid, mild_affine(f.grid), f.u_d.view(), f.u_grid, comp_d.view(), whole);
    invert_field(kGpu, f.u_d.view(), f.u_grid, f.grid, inv_d.view(), whole, opt, f.v_d.view(), {ip.data(), nz, 2});
    jacobian_determinant(kGpu, f.u_same_d.view(), f.grid, det_d.view(), whole, {dp.data(), nz, 1});
    return Result{comp_d.to(kHost), inv_d.to(kHost), det_d.to(kHost), ip.to_host(), dp.to_host()};
  };
  const Result a = run_whole(), b = run_whole();
  EXPECT_TRUE(bitwise_equal(a.comp, b.comp, whole));
  EXPECT_TRUE(bitwise_equal(a.inv, b.inv, whole));
  EXPECT_TRUE(bitwise_equal(a.det, b.det, whole));
  EXPECT_EQ(std::memcmp(a.ip.data(), b.ip.data(), a.ip.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(a.dp.data(), b.dp.data(), a.dp.size() * sizeof(double)), 0);

  Volume<float> comp_s(f.grid, 3), inv_s(f.grid, 3), det_s(f.grid);
  std::vector<double> ip_s, dp_s;
  for (const Box& s : z_slabs(f.grid.size, 3)) {
    const Volume<float> v_slab = copy_box(f.v, s).to(kDev);
    const Volume<float> u_halo = copy_box(f.u_same, grow_box(s, 1, f.grid.size)).to(kDev);
    Volume<float> o_d(f.grid, s, 3, kDev), d_d(f.grid, s, 1, kDev);
    Buffer<double> ip(std::size_t(s.size.z) * 2, kDev), dp(std::size_t(s.size.z), kDev);
    compose_fields(kGpu, v_slab.view(), f.grid, mild_affine(f.grid), f.u_d.view(), f.u_grid, o_d.view(), s);
    paste_box(comp_s, o_d.to(kHost), s);
    invert_field(kGpu, f.u_d.view(), f.u_grid, f.grid, o_d.view(), s, opt, v_slab.view(), {ip.data(), s.size.z, 2});
    paste_box(inv_s, o_d.to(kHost), s);
    jacobian_determinant(kGpu, u_halo.view(), f.grid, d_d.view(), s, {dp.data(), s.size.z, 1});
    paste_box(det_s, d_d.to(kHost), s);
    const std::vector<double> iph = ip.to_host(), dph = dp.to_host();
    ip_s.insert(ip_s.end(), iph.begin(), iph.end());
    dp_s.insert(dp_s.end(), dph.begin(), dph.end());
  }
  EXPECT_TRUE(bitwise_equal(a.comp, comp_s, whole));
  EXPECT_TRUE(bitwise_equal(a.inv, inv_s, whole));
  EXPECT_TRUE(bitwise_equal(a.det, det_s, whole));
  EXPECT_EQ(std::memcmp(a.ip.data(), ip_s.data(), a.ip.size() * sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(a.dp.data(), dp_s.data(), a.dp.size() * sizeof(double)), 0);
}

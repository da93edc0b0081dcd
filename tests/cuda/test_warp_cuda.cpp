// The warp op on the CUDA backend against the CPU reference on fresh random inputs: values
// (relative error < 1e-5), gradients w.r.t. u and the affine (< 1e-4), outputs written exactly on
// the owned box (NaN-poisoned before the run), z-slab stitching and run-to-run determinism on the
// device. Skipped without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "gigareg/error.hpp"
#include "gigareg/ops/warp.hpp"
#include "test_util.hpp"

using namespace gigareg;
using namespace gigareg::test;

namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device"

const Context kCpu = Context::cpu();
const Context kGpu = Context::cuda();
constexpr MemorySpace kDev = MemorySpace::Device;

/// Host inputs and their device copies. The fixed grid is wider than a warp (37 > 32) and its
/// rows are not a multiple of the block's 8, so partial blocks and x loops are exercised.
struct Problem {
  Geometry fixed, moving_grid;
  Volume<float> moving, u, weights;
  Volume<float> moving_d, u_d, weights_d;
  Affined affine;
};

Problem make_problem(std::uint64_t seed) {
  Problem p;
  p.fixed = oblique_geometry({37, 21, 11});
  p.moving_grid = centered_like(p.fixed, {33, 25, 14}, {1.05, 0.93, 1.45}, rotation(-0.12, 0.27, 0.05));
  p.moving = random_smooth_volume(p.moving_grid, seed, 1.0, 2.0);
  p.u = random_smooth_field(p.fixed, seed + 1, 1.5);
  p.weights = random_volume(p.fixed, seed + 2, -0.5, 1.5);
  const Mat3d l = rotation(0.05, -0.08, 0.11) * Mat3d{{1.04, 0.03, 0.0, -0.02, 0.97, 0.04, 0.01, 0.0, 1.02}};
  const Vec3d c = p.fixed.index_to_physical({18, 10, 5});
  p.affine = {l, c - l * c + Vec3d{0.7, -0.4, 0.3}};
  p.moving_d = p.moving.to(kDev);
  p.u_d = p.u.to(kDev);
  p.weights_d = p.weights.to(kDev);
  return p;
}

WarpInputs inputs(const Problem& p, bool device, Interpolation interp, Boundary b, bool with_u) {
  WarpInputs in;
  in.moving = device ? p.moving_d.view() : p.moving.view();
  in.moving_geometry = p.moving_grid;
  in.fixed_geometry = p.fixed;
  in.affine = p.affine;
  if (with_u) in.displacement = device ? p.u_d.view() : p.u.view();
  in.interpolation = interp;
  in.boundary = b;
  return in;
}

/// A NaN-filled volume in device memory.
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

}  // namespace

TEST(WarpCuda, ForwardMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Problem p = make_problem(1);
  const Box owned = interior(p.fixed);
  for (Interpolation interp : {Interpolation::Linear, Interpolation::Nearest, Interpolation::Label})
    for (Boundary b : {Boundary::Zero, Boundary::Border})
      for (bool with_u : {true, false}) {
        Volume<float> cpu(p.fixed);
        warp(kCpu, inputs(p, false, interp, b, with_u), cpu.view(), owned);
        Volume<float> gpu_d = poisoned_device(p.fixed, 1);
        warp(kGpu, inputs(p, true, interp, b, with_u), gpu_d.view(), owned);
        const Volume<float> gpu = gpu_d.to(MemorySpace::Host);
        expect_written_exactly(gpu, owned, "warp out");
        if (interp == Interpolation::Linear) {
          EXPECT_LT(max_rel_error(gpu, cpu, owned), 1e-5) << "boundary " << int(b);
        } else {
          // Contracted multiply-adds on the device can move a sample across a rounding or voting
          // tie; such voxels are rare and take a neighbour's value.
          index_t differ = 0;
          for (index_t k = owned.lo.z; k < owned.hi().z; ++k)
            for (index_t j = owned.lo.y; j < owned.hi().y; ++j)
              for (index_t i = owned.lo.x; i < owned.hi().x; ++i) differ += gpu(i, j, k) != cpu(i, j, k);
          EXPECT_LE(differ, owned.voxel_count() / 1000 + 1)
              << "interp " << int(interp) << " boundary " << int(b);
        }
      }
}

TEST(WarpCuda, BackwardMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const Problem p = make_problem(2);
  const Box owned = interior(p.fixed);
  const std::size_t n_part = std::size_t(owned.size.z) * kAffineTerms;
  for (Boundary b : {Boundary::Zero, Boundary::Border})
    for (bool with_u : {true, false}) {
      Volume<float> gu_cpu(p.fixed, 3);
      std::vector<double> pa_cpu(n_part);
      warp_backward(kCpu, inputs(p, false, Interpolation::Linear, b, with_u), p.weights.view(), owned,
                    {gu_cpu.view(), {pa_cpu.data(), owned.size.z, kAffineTerms}, {}});

      Volume<float> gu_d = poisoned_device(p.fixed, 3);
      Buffer<double> pa_d(n_part, kDev);
      const SlicePartials sp{pa_d.data(), owned.size.z, kAffineTerms};
      warp_backward(kGpu, inputs(p, true, Interpolation::Linear, b, with_u), p.weights_d.view(),
                    owned, {gu_d.view(), sp, {}});
      const Volume<float> gu = gu_d.to(MemorySpace::Host);
      expect_written_exactly(gu, owned, "grad_u");
      EXPECT_LT(max_rel_error(gu, gu_cpu, owned), 1e-4) << "boundary " << int(b) << " u " << with_u;
      EXPECT_LT(max_rel_error(reduce_slices(kGpu, sp), reduce_slices(kCpu, {pa_cpu.data(), owned.size.z, kAffineTerms})), 1e-4);
      EXPECT_LT(max_rel_error(pa_d.to_host(), pa_cpu), 1e-4) << "per-slice partials";

      // Each gradient alone (the other template paths).
      Buffer<double> pa_only(n_part, kDev);
      warp_backward(kGpu, inputs(p, true, Interpolation::Linear, b, with_u), p.weights_d.view(),
                    owned, {{}, {pa_only.data(), owned.size.z, kAffineTerms}, {}});
      EXPECT_EQ(std::memcmp(pa_only.to_host().data(), pa_d.to_host().data(), n_part * sizeof(double)), 0);
      Volume<float> gu_only_d = poisoned_device(p.fixed, 3);
      warp_backward(kGpu, inputs(p, true, Interpolation::Linear, b, with_u), p.weights_d.view(),
                    owned, {gu_only_d.view(), {}, {}});
      EXPECT_TRUE(bitwise_equal(gu_only_d.to(MemorySpace::Host), gu, owned));
    }
}

// z-slabs on the device (each with its own u and grad_out copy) stitch bitwise to the whole
// volume, affine slice partials included; two whole runs are bitwise equal.
TEST(WarpCuda, SlabsStitchBitwiseAndDeterministic) {
  SKIP_WITHOUT_CUDA();
  const Problem p = make_problem(3);
  const Box whole = whole_box(p.fixed);
  const index_t nz = p.fixed.size.z;
  auto run_whole = [&](Volume<float>& out, Volume<float>& gu, std::vector<double>& pa) {
    Volume<float> out_d(p.fixed, 1, kDev), gu_d(p.fixed, 3, kDev);
    Buffer<double> pa_d(std::size_t(nz) * kAffineTerms, kDev);
    const WarpInputs in = inputs(p, true, Interpolation::Linear, Boundary::Zero, true);
    warp(kGpu, in, out_d.view(), whole);
    warp_backward(kGpu, in, p.weights_d.view(), whole, {gu_d.view(), {pa_d.data(), nz, kAffineTerms}, {}});
    out = out_d.to(MemorySpace::Host);
    gu = gu_d.to(MemorySpace::Host);
    pa = pa_d.to_host();
  };
  Volume<float> out1, gu1, out2, gu2;
  std::vector<double> pa1, pa2;
  run_whole(out1, gu1, pa1);
  run_whole(out2, gu2, pa2);
  EXPECT_TRUE(bitwise_equal(out1, out2, whole));
  EXPECT_TRUE(bitwise_equal(gu1, gu2, whole));
  EXPECT_EQ(std::memcmp(pa1.data(), pa2.data(), pa1.size() * sizeof(double)), 0);

  Volume<float> out_s(p.fixed), gu_s(p.fixed, 3);
  std::vector<double> pa_s;
  for (const Box& s : z_slabs(p.fixed.size, 3)) {
    const Volume<float> u_slab = copy_box(p.u, s).to(kDev), w_slab = copy_box(p.weights, s).to(kDev);
    WarpInputs in = inputs(p, true, Interpolation::Linear, Boundary::Zero, true);
    in.displacement = u_slab.view();
    Volume<float> o_d(p.fixed, s, 1, kDev), g_d(p.fixed, s, 3, kDev);
    Buffer<double> pa_d(std::size_t(s.size.z) * kAffineTerms, kDev);
    warp(kGpu, in, o_d.view(), s);
    warp_backward(kGpu, in, w_slab.view(), s, {g_d.view(), {pa_d.data(), s.size.z, kAffineTerms}, {}});
    paste_box(out_s, o_d.to(MemorySpace::Host), s);
    paste_box(gu_s, g_d.to(MemorySpace::Host), s);
    const std::vector<double> h = pa_d.to_host();
    pa_s.insert(pa_s.end(), h.begin(), h.end());
  }
  EXPECT_TRUE(bitwise_equal(out1, out_s, whole));
  EXPECT_TRUE(bitwise_equal(gu1, gu_s, whole));
  ASSERT_EQ(pa_s.size(), pa1.size());
  EXPECT_EQ(std::memcmp(pa1.data(), pa_s.data(), pa1.size() * sizeof(double)), 0);
}

// dL/dI would need float atomics on the device: refused with a clear error.
TEST(WarpCuda, MovingImageGradientIsCpuOnly) {
  SKIP_WITHOUT_CUDA();
  const Problem p = make_problem(4);
  Volume<float> gm_d(p.moving_grid, 1, kDev);
  WarpGradients grads;
  grads.moving = gm_d.view();
  try {
    warp_backward(kGpu, inputs(p, true, Interpolation::Linear, Boundary::Zero, true),
                  p.weights_d.view(), whole_box(p.fixed), grads);
    ADD_FAILURE() << "dL/dI accepted on the cuda backend";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(e.where(), "warp_backward");
  }
  // Host views on the device backend are refused too.
  Volume<float> out_h(p.fixed);
  EXPECT_THROW(warp(kGpu, inputs(p, true, Interpolation::Linear, Boundary::Zero, true), out_h.view(),
                    whole_box(p.fixed)),
               Error);
}

// dL/dW in the first component plane of dL/du (as the registration keeps it): bitwise the result
// with separate volumes, on the device.
TEST(WarpCuda, BackwardWithTheLossGradientInTheFirstPlaneOfTheOutput) {
  SKIP_WITHOUT_CUDA();
  const Problem p = make_problem(4);
  const Box whole{{0, 0, 0}, p.fixed.size};
  const WarpInputs in = inputs(p, true, Interpolation::Linear, Boundary::Zero, true);
  Volume<float> separate_d = poisoned_device(p.fixed, 3);
  warp_backward(kGpu, in, p.weights_d.view(), whole, {separate_d.view(), {}, {}});
  Volume<float> shared_h(p.fixed, 3);
  shared_h.fill(0.0f);
  for (index_t e = 0; e < p.weights.element_count(); ++e) shared_h.data()[e] = p.weights.data()[e];
  Volume<float> shared_d = shared_h.to(MemorySpace::Device);
  VolumeView<float> first_plane = shared_d.view();
  first_plane.components = 1;
  warp_backward(kGpu, in, first_plane, whole, {shared_d.view(), {}, {}});
  EXPECT_TRUE(bitwise_equal(separate_d.to(MemorySpace::Host), shared_d.to(MemorySpace::Host), whole));
}

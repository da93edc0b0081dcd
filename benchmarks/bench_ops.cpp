// GPU benchmarks of the registration primitives at 128^3, 256^3, 512^3 and the largest cube that
// fits. Each states its floor: the fewest bytes the op must move (every input read once, every
// output written once), divided by the measured device copy bandwidth (support.hpp).
#include <vector>

#include "gigareg/ops/field.hpp"
#include "gigareg/ops/loss.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/smooth.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/phantom.hpp"
#include "support.hpp"

namespace {

using namespace gigareg;

Geometry cube(int64_t n) {
  Geometry g;
  g.size = {n, n, n};
  g.spacing = {1, 1, 1};
  return g;
}
Box whole(const Geometry& g) { return {{0, 0, 0}, g.size}; }

// A displacement of a few voxels, as in a registration: random smooth field scaled to 3 mm.
Volume<float> device_displacement(const Geometry& g) {
  Volume<float> u = bench::random_device_volume(g, 3, 11, -3.0f, 3.0f);
  return u;
}

struct DeviceSlices {
  Volume<double> buffer;
  SlicePartials partials;
  DeviceSlices(const Geometry& g, int terms) {
    Geometry s;
    s.size = {terms, g.size.z, 1};
    buffer = Volume<double>(s, 1, MemorySpace::Device);
    partials = SlicePartials{buffer.data(), g.size.z, terms};
  }
};

// ---- warp --------------------------------------------------------------------------------
// Forward, trilinear with a displacement: read u (12 B) + moving (4 B, each voxel about once via
// the caches for smooth warps) + write out (4 B) = 20 B/voxel.
void BM_WarpForward(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> moving = bench::random_device_volume(g, 1, 1, 0.0f, 100.0f);
  Volume<float> u = device_displacement(g);
  Volume<float> out(g, 1, MemorySpace::Device);
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = g;
  in.fixed_geometry = g;
  in.displacement = u.view();
  const double floor_bytes = 20.0 * double(g.voxel_count());
  bench::run_timed(state, g.voxel_count(), floor_bytes, base,
                   [&] { warp(Context::cuda(), in, out.view(), whole(g)); });
}

// Forward + backward (grad wrt u and the 12 affine parameters): forward 20 B; backward reads
// grad_out (4), u (12), moving (4) and writes grad_u (12): 32 B. Together 52 B/voxel.
void BM_WarpForwardBackward(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> moving = bench::random_device_volume(g, 1, 1, 0.0f, 100.0f);
  Volume<float> u = device_displacement(g);
  Volume<float> out(g, 1, MemorySpace::Device);
  Volume<float> grad_out = bench::random_device_volume(g, 1, 5, -1.0f, 1.0f);
  Volume<float> grad_u(g, 3, MemorySpace::Device);
  DeviceSlices affine(g, 12);
  WarpInputs in;
  in.moving = moving.view();
  in.moving_geometry = g;
  in.fixed_geometry = g;
  in.displacement = u.view();
  WarpGradients grads;
  grads.displacement = grad_u.view();
  grads.affine = affine.partials;
  const double floor_bytes = 52.0 * double(g.voxel_count());
  bench::run_timed(state, g.voxel_count(), floor_bytes, base, [&] {
    warp(Context::cuda(), in, out.view(), whole(g));
    warp_backward(Context::cuda(), in, grad_out.view(), whole(g), grads);
  });
}

// ---- compose -----------------------------------------------------------------------------
// w = v + u o (x + v): read v (12), u (12), write w (12) = 36 B/voxel.
void BM_Compose(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> v = bench::random_device_volume(g, 3, 21, -1.0f, 1.0f);
  Volume<float> u = device_displacement(g);
  Volume<float> w(g, 3, MemorySpace::Device);
  bench::run_timed(state, g.voxel_count(), 36.0 * double(g.voxel_count()), base, [&] {
    compose_fields(Context::cuda(), v.view(), g, u.view(), g, w.view(), whole(g));
  });
}

// ---- smoothing ---------------------------------------------------------------------------
// Scalar: read 4 + write 4 = 8 B/voxel; field: 24 B/voxel. sigma 1.5 voxels (radius 5).
void BM_SmoothScalar(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> in = bench::random_device_volume(g, 1, 31, 0.0f, 1.0f);
  Volume<float> out(g, 1, MemorySpace::Device);
  bench::run_timed(state, g.voxel_count(), 8.0 * double(g.voxel_count()), base, [&] {
    gaussian_smooth(Context::cuda(), in.view(), out.view(), {1.5, 1.5, 1.5}, whole(g));
  });
}
void BM_SmoothField(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> in = bench::random_device_volume(g, 3, 32, -1.0f, 1.0f);
  Volume<float> out(g, 3, MemorySpace::Device);
  bench::run_timed(state, g.voxel_count(), 24.0 * double(g.voxel_count()), base, [&] {
    gaussian_smooth(Context::cuda(), in.view(), out.view(), {1.5, 1.5, 1.5}, whole(g));
  });
}

// ---- Adam --------------------------------------------------------------------------------
// Fused: read g, m, v (36) + write m, v (24) + read-modify-write u (24) = 84 B/voxel.
void BM_AdamFused(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> grad = bench::random_device_volume(g, 3, 41, -1.0f, 1.0f);
  Volume<float> m = bench::random_device_volume(g, 3, 42, -0.1f, 0.1f);
  Volume<float> v = bench::random_device_volume(g, 3, 43, 0.01f, 0.1f);
  Volume<float> u = device_displacement(g);
  AdamParams p;
  bench::run_timed(state, g.voxel_count(), 84.0 * double(g.voxel_count()), base, [&] {
    adam_update(Context::cuda(), grad.view(), m.view(), v.view(), u.view(), p, whole(g), StepOutput::Add);
  });
}


// ---- losses ------------------------------------------------------------------------------
// LNCC forward + exact gradient, box window radius 2 (5^3): read F and W (8 B) + write the
// gradient (4 B) = 12 B/voxel.
void BM_LnccForwardGradient(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> f = bench::random_device_volume(g, 1, 51, 0.0f, 100.0f);
  Volume<float> w = bench::random_device_volume(g, 1, 52, 0.0f, 100.0f);
  Volume<float> grad(g, 1, MemorySpace::Device);
  DeviceSlices partials(g, kLossTerms);
  LnccParams p;
  p.radius = 2;
  bench::run_timed(state, g.voxel_count(), 12.0 * double(g.voxel_count()), base, [&] {
    lncc_loss(Context::cuda(), f.view(), w.view(), {}, whole(g), p, partials.partials, grad.view());
  });
}

// Mattes MI forward + gradient, 32 bins: the gradient needs the global joint histogram, so two
// passes are inherent: histogram (read F, W: 8 B) then gradient (read F, W, write grad: 12 B)
// = 20 B/voxel (the one-pass bound would be 12 B).
void BM_MattesForwardGradient(benchmark::State& state) {
  const Geometry g = cube(state.range(0));
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> f = bench::random_device_volume(g, 1, 61, 0.0f, 100.0f);
  Volume<float> w = bench::random_device_volume(g, 1, 62, 0.0f, 100.0f);
  Volume<float> grad(g, 1, MemorySpace::Device);
  Geometry one_slice = g;
  one_slice.size.z = 1;  // the MI value is one slice: it comes from the (global) histogram
  DeviceSlices value(one_slice, kLossTerms);
  MattesParams p;
  p.bins = 32;
  p.fixed_min = -5.0f;
  p.fixed_max = 95.0f;
  p.moving_min = -5.0f;
  p.moving_max = 95.0f;
  bench::run_timed(state, g.voxel_count(), 20.0 * double(g.voxel_count()), base, [&] {
    mattes_mi(Context::cuda(), f.view(), w.view(), {}, whole(g), p, value.partials, grad.view());
  });
}

void sizes(benchmark::internal::Benchmark* b, double bytes_per_voxel) {
  for (int64_t n : bench::cube_sizes(bytes_per_voxel)) b->Arg(n);
  b->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_WarpForward)->Apply([](auto* b) { sizes(b, 24); });
BENCHMARK(BM_WarpForwardBackward)->Apply([](auto* b) { sizes(b, 40); });
BENCHMARK(BM_Compose)->Apply([](auto* b) { sizes(b, 36); });
BENCHMARK(BM_SmoothScalar)->Apply([](auto* b) { sizes(b, 16); });
BENCHMARK(BM_SmoothField)->Apply([](auto* b) { sizes(b, 48); });
BENCHMARK(BM_LnccForwardGradient)->Apply([](auto* b) { sizes(b, 16); });
BENCHMARK(BM_MattesForwardGradient)->Apply([](auto* b) { sizes(b, 16); });
BENCHMARK(BM_AdamFused)->Apply([](auto* b) { sizes(b, 48); });

}  // namespace

BENCHMARK_MAIN();

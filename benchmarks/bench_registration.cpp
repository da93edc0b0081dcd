// One greedy LNCC iteration at the finest level of an N^3 pair on CUDA (issue target: 512^3 under
// 60 ms and under 56 bytes of device memory per voxel; the PyTorch peer: 0.19 s and about 107
// bytes per voxel at 91 Mvox on an H100). The pipeline itself runs (register_images, the greedy
// preset's stage at shrink 1, no smoothing), so everything an iteration does is counted: warp,
// LNCC and its gradient, warp backward, gradient smoothing, Adam with its two max-norm
// normalisations, the compositive update and the field smoothing.
//
// Time per iteration: the median of the intervals between consecutive iterations' progress
// callbacks (each comes after the host has read that iteration's loss, i.e. after the device
// finished the iteration; the level's set-up is outside them). Memory: the largest device memory in use seen after any
// iteration (cudaMemGetInfo, less what was in use before) plus the high-water mark of the
// stream-ordered pool that the ops' scratch comes from: an upper bound of the peak.

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "gigareg/log.hpp"
#include "gigareg/registration.hpp"
#include "support.hpp"

namespace gigareg::bench {
namespace {

/// An analytic image with structure at several scales (blobs and waves), sampled at x + d(x)
/// for a smooth displacement d of up to `shift` voxels: the moving image is the fixed one
/// deformed, without a warp op in the loop.
Volume<float> phantom(const Geometry& g, double shift) {
  Volume<float> v(g);
  const index_t nx = g.size.x, ny = g.size.y, nz = g.size.z;
  const double s = 2.0 * 3.14159265358979 / double(nx);
#pragma omp parallel for schedule(static)
  for (index_t k = 0; k < nz; ++k)
    for (index_t j = 0; j < ny; ++j)
      for (index_t i = 0; i < nx; ++i) {
        const double x = double(i) + shift * std::sin(s * double(j) * 1.3 + 0.4) * std::cos(s * double(k));
        const double y = double(j) + shift * std::sin(s * double(k) * 1.1 + 1.0) * std::cos(s * double(i));
        const double z = double(k) + shift * std::sin(s * double(i) * 0.9 + 2.0) * std::cos(s * double(j));
        double val = 100.0;
        val += 40.0 * std::sin(s * 3.0 * x) * std::sin(s * 2.0 * y + 0.3) * std::sin(s * 2.5 * z + 0.7);
        val += 25.0 * std::sin(s * 11.0 * x + 0.2) * std::cos(s * 9.0 * y) * std::sin(s * 13.0 * z + 1.1);
        val += 15.0 * std::cos(s * 23.0 * (x + y) + 0.5) * std::sin(s * 19.0 * z);
        v(i, j, k) = float(val);
      }
  return v;
}

struct Run {
  double median_iteration_seconds = 0;
  std::size_t peak_bytes = 0;
};

Run run_greedy(const Volume<float>& f, const Volume<float>& m, int iterations) {
  RegistrationParams p;
  p.device = DeviceChoice::Cuda;
  p.compute_inverse = false;
  StageParams s = registration_preset("greedy").stages.back();
  s.convergence.iterations = {iterations};
  s.convergence.window = iterations + 1;  // never stops early
  s.shrink_factors = {1};
  s.smoothing_sigmas = {0};
  p.stages = {s};
  cudaDeviceSynchronize();
  const std::size_t before = device_bytes_in_use();
  cudaMemPool_t pool;
  cudaDeviceGetDefaultMemPool(&pool, 0);
  std::uint64_t zero = 0;
  cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero);
  std::size_t seen = 0;
  std::vector<std::chrono::steady_clock::time_point> ends;
  p.progress = [&](const IterationReport&) {
    ends.push_back(std::chrono::steady_clock::now());
    seen = std::max(seen, device_bytes_in_use());
  };
  (void)register_images(p, f, m);
  std::uint64_t pool_high = 0;
  cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &pool_high);
  Run out;
  std::vector<double> intervals;
  for (std::size_t i = 1; i < ends.size(); ++i)
    intervals.push_back(std::chrono::duration<double>(ends[i] - ends[i - 1]).count());
  std::sort(intervals.begin(), intervals.end());
  out.median_iteration_seconds = intervals.empty() ? 0.0 : intervals[intervals.size() / 2];
  out.peak_bytes = (seen > before ? seen - before : 0) + std::size_t(pool_high);
  return out;
}

void BM_GreedyIteration(benchmark::State& state) {
  set_log_level(LogLevel::Warning);
  const index_t n = state.range(0);
  Geometry g;
  g.size = {n, n, n};
  const Volume<float> f = phantom(g, 0.0), m = phantom(g, 3.0);
  (void)run_greedy(f, m, 1);  // warm-up: CUDA context, module loading, pools
  for (auto _ : state) {
    const Run b = run_greedy(f, m, 21);
    const double per_iteration = b.median_iteration_seconds;
    state.SetIterationTime(per_iteration);
    state.counters["ms_per_iteration"] = 1e3 * per_iteration;
    state.counters["peak_bytes_per_voxel"] = double(b.peak_bytes) / double(g.voxel_count());
    state.counters["GVox_per_s"] = double(g.voxel_count()) / per_iteration * 1e-9;
  }
}
BENCHMARK(BM_GreedyIteration)->Arg(128)->Arg(256)->Arg(512)->UseManualTime()->Iterations(2)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace gigareg::bench

BENCHMARK_MAIN();

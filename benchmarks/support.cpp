#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "cuda/check.cuh"

namespace gigareg::bench {

double device_copy_bandwidth() {
  static double bandwidth = [] {
    const std::size_t bytes = std::size_t(1) << 30;
    void *a = nullptr, *b = nullptr;
    GIGAREG_CUDA_CHECK(cudaMalloc(&a, bytes));
    GIGAREG_CUDA_CHECK(cudaMalloc(&b, bytes));
    GIGAREG_CUDA_CHECK(cudaMemset(a, 1, bytes));
    cudaEvent_t start, stop;
    GIGAREG_CUDA_CHECK(cudaEventCreate(&start));
    GIGAREG_CUDA_CHECK(cudaEventCreate(&stop));
    std::vector<float> ms;
    for (int i = 0; i < 12; ++i) {
      GIGAREG_CUDA_CHECK(cudaEventRecord(start));
      GIGAREG_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
      GIGAREG_CUDA_CHECK(cudaEventRecord(stop));
      GIGAREG_CUDA_CHECK(cudaEventSynchronize(stop));
      float t = 0;
      GIGAREG_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
      if (i >= 2) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    const double median_s = ms[ms.size() / 2] * 1e-3;
    cudaFree(a);
    cudaFree(b);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * double(bytes) / median_s;
  }();
  return bandwidth;
}

std::size_t device_bytes_in_use() {
  std::size_t free_b = 0, total_b = 0;
  GIGAREG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return total_b - free_b;
}

std::vector<int64_t> cube_sizes(double bytes_per_voxel) {
  std::size_t free_b = 0, total_b = 0;
  GIGAREG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  std::vector<int64_t> sizes{128, 256, 512};
  const double fit = std::cbrt(0.9 * double(free_b) / bytes_per_voxel);
  const int64_t largest = int64_t(fit) / 32 * 32;
  if (largest > 512) sizes.push_back(largest);
  return sizes;
}

void fill_pattern_device(float* data, std::int64_t nx, std::int64_t ny, std::int64_t nz, int components,
                         std::uint64_t seed, float lo, float hi);  // support_fill.cu

Volume<float> random_device_volume(const Geometry& g, int components, std::uint64_t seed, float lo,
                                   float hi) {
  Volume<float> v(g, components, MemorySpace::Device);
  fill_pattern_device(v.data(), g.size.x, g.size.y, g.size.z, components, seed, lo, hi);
  return v;
}

void run_timed(benchmark::State& state, index_t voxels, double floor_bytes,
               std::size_t baseline_device_bytes, const std::function<void()>& op) {
  cudaEvent_t start, stop;
  GIGAREG_CUDA_CHECK(cudaEventCreate(&start));
  GIGAREG_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) op();  // warm-up: module load, scratch pools
  GIGAREG_CUDA_CHECK(cudaDeviceSynchronize());
  const std::size_t peak = device_bytes_in_use() - baseline_device_bytes;
  // Diagnostic: GIGAREG_BENCH_CALLS=n times n calls in a row per iteration and reports the time
  // per call, which hides the host's launch overhead behind the device's work (the default, 1,
  // is the op's own time: the device waits for the host from the start event on).
  const char* calls_env = std::getenv("GIGAREG_BENCH_CALLS");
  const int calls = calls_env != nullptr ? std::max(1, std::atoi(calls_env)) : 1;
  std::vector<float> times_ms;
  for (auto _ : state) {
    GIGAREG_CUDA_CHECK(cudaEventRecord(start));
    for (int c = 0; c < calls; ++c) op();
    GIGAREG_CUDA_CHECK(cudaEventRecord(stop));
    GIGAREG_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    GIGAREG_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    ms /= float(calls);
    state.SetIterationTime(ms * 1e-3);
    times_ms.push_back(ms);
  }
  std::sort(times_ms.begin(), times_ms.end());
  const double median_ms = times_ms.empty() ? 0.0 : times_ms[times_ms.size() / 2];
  GIGAREG_CUDA_CHECK(cudaEventDestroy(start));
  GIGAREG_CUDA_CHECK(cudaEventDestroy(stop));
  const double floor_s = floor_bytes / device_copy_bandwidth();
  state.counters["voxels"] = double(voxels);
  state.counters["GVox/s"] = benchmark::Counter(double(voxels) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(floor_bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["floor_ms"] = floor_s * 1e3;
  state.counters["median_ms"] = median_ms;
  state.counters["x_floor"] = median_ms / (floor_s * 1e3);
  state.counters["copy_GB/s"] = device_copy_bandwidth() * 1e-9;
  state.counters["peak_B/vox"] = double(peak) / double(voxels);
}

}  // namespace gigareg::bench

// Fills benchmark inputs on the device: a smooth pattern plus hashed noise, so that gigavoxel
// inputs cost no host memory or host time, and are never zeros or constants.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"

namespace gigareg::bench {
namespace {

__device__ inline float hash_unit(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return float(x >> 40) * (1.0f / 16777216.0f);
}

__global__ void fill_kernel(float* data, std::int64_t n, std::int64_t nx, std::int64_t ny,
                            int components, std::uint64_t seed, float lo, float hi) {
  const std::int64_t total = n * components;
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < total;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t c = e / n, idx = e - c * n;
    const std::int64_t i = idx % nx, j = (idx / nx) % ny, k = idx / (nx * ny);
    const float fx = 0.07f + 0.01f * float(seed % 7);
    const float s = 0.5f + 0.3f * sinf(fx * float(i) + float(c)) * cosf(0.05f * float(j)) +
                    0.1f * sinf(0.03f * float(k));
    data[e] = lo + (hi - lo) * (0.8f * s + 0.1f * hash_unit(std::uint64_t(e) * 0x9E3779B97F4A7C15ULL + seed));
  }
}

}  // namespace

void fill_pattern_device(float* data, std::int64_t nx, std::int64_t ny, std::int64_t nz, int components,
                         std::uint64_t seed, float lo, float hi) {
  const std::int64_t n = nx * ny * nz;
  fill_kernel<<<cuda_detail::blocks_for(n * components, 256), 256>>>(data, n, nx, ny, components, seed, lo, hi);
  GIGAREG_CUDA_CHECK_LAUNCH("fill_kernel");
  GIGAREG_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace gigareg::bench

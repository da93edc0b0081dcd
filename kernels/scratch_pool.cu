// The CUDA ops' small scratch pool (src/cuda/scratch_pool.hpp).

#include <cstdint>
#include <map>
#include <mutex>

#include "cuda/check.cuh"
#include "cuda/scratch_pool.hpp"

namespace gigareg::cuda {
namespace {

/// The current device's pool: device memory, release threshold "never", so that the few MB the
/// ops take per call stay mapped between calls.
cudaMemPool_t small_pool() {
  static std::mutex mutex;
  static std::map<int, cudaMemPool_t> pools;
  int device = 0;
  GIGAREG_CUDA_CHECK(cudaGetDevice(&device));
  const std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = pools.find(device); it != pools.end()) return it->second;
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  cudaMemPool_t pool = nullptr;
  GIGAREG_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
  std::uint64_t keep = UINT64_MAX;
  GIGAREG_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  pools.emplace(device, pool);
  return pool;
}

}  // namespace

void* small_scratch_alloc(std::size_t bytes, void* stream) {
  void* p = nullptr;
  if (bytes == 0) return p;
  GIGAREG_CUDA_CHECK(
      cudaMallocFromPoolAsync(&p, bytes, small_pool(), static_cast<cudaStream_t>(stream)));
  return p;
}

void small_scratch_free(void* ptr, void* stream) noexcept {
  if (ptr != nullptr) (void)cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream));
}

}  // namespace gigareg::cuda

#include "gigareg/memory.hpp"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"

#if GIGAREG_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gigareg {
namespace {

#if !GIGAREG_WITH_CUDA
[[noreturn]] void no_cuda(const std::string& where) {
  throw_error(ErrorKind::Cuda, where, "device memory requested but gigareg was built without CUDA");
}
#endif

std::string human_bytes(std::size_t bytes) {
  const double gib = double(bytes) / double(1ull << 30);
  return std::to_string(bytes) + " bytes (" + std::to_string(gib) + " GiB)";
}

}  // namespace

const char* to_string(MemorySpace space) { return space == MemorySpace::Host ? "host" : "device"; }

bool cuda_available() {
#if GIGAREG_WITH_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return false;
  }
  return n > 0;
#else
  return false;
#endif
}

std::size_t available_bytes(MemorySpace space) {
  if (space == MemorySpace::Host) {
    std::ifstream meminfo("/proc/meminfo");
    std::string key;
    std::size_t kib = 0;
    std::string unit;
    while (meminfo >> key >> kib >> unit)
      if (key == "MemAvailable:") return kib * 1024;
    return ~std::size_t(0);  // unknown: do not refuse
  }
#if GIGAREG_WITH_CUDA
  std::size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return free_b;
#else
  return 0;
#endif
}

void require_available(std::size_t bytes, MemorySpace space, const std::string& where) {
  const std::size_t avail = available_bytes(space);
  if (bytes > avail)
    throw_error(ErrorKind::OutOfMemory, where,
                "needs " + human_bytes(bytes) + " of " + to_string(space) + " memory but only " +
                    human_bytes(avail) + " is available");
}

void* allocate_bytes(std::size_t bytes, MemorySpace space, const std::string& where) {
  if (bytes == 0) return nullptr;
  if (space == MemorySpace::Host) {
    const std::size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded);
    if (!p) throw_error(ErrorKind::OutOfMemory, where, "host allocation of " + human_bytes(bytes) + " failed");
    return p;
  }
#if GIGAREG_WITH_CUDA
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw_error(e == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda, where,
                "cudaMalloc of " + human_bytes(bytes) + " failed: " + cudaGetErrorString(e));
  }
  return p;
#else
  no_cuda(where);
#endif
}

void free_bytes(void* ptr, MemorySpace space) noexcept {
  if (!ptr) return;
  if (space == MemorySpace::Host) {
    std::free(ptr);
    return;
  }
#if GIGAREG_WITH_CUDA
  (void)cudaFree(ptr);  // destructors must not throw; a failing free leaves a sticky error
#endif
}

void copy_bytes(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_space == MemorySpace::Host && src_space == MemorySpace::Host) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if GIGAREG_WITH_CUDA
  const cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
  if (e != cudaSuccess) throw_error(ErrorKind::Cuda, "copy_bytes", cudaGetErrorString(e));
#else
  no_cuda("copy_bytes");
#endif
}

void zero_bytes(void* dst, MemorySpace space, std::size_t bytes) {
  if (bytes == 0) return;
  if (space == MemorySpace::Host) {
    std::memset(dst, 0, bytes);
    return;
  }
#if GIGAREG_WITH_CUDA
  // cudaMemset may return before the device is done; the device sync makes the zeros visible to
  // work on any stream (set-up only, never in an iteration).
  cudaError_t e = cudaMemset(dst, 0, bytes);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) throw_error(ErrorKind::Cuda, "zero_bytes", cudaGetErrorString(e));
#else
  no_cuda("zero_bytes");
#endif
}

}  // namespace gigareg

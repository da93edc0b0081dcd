#include "gigareg/memory.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
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

std::future<void> start_cuda_context() {
#if GIGAREG_WITH_CUDA
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    (void)cudaGetLastError();
    return std::async(std::launch::deferred, [] {});
  }
  // A new thread starts on device 0: set the caller's device (a rank's GPU) before touching it.
  return std::async(std::launch::async, [device] {
    if (cudaSetDevice(device) != cudaSuccess || cudaFree(nullptr) != cudaSuccess)
      (void)cudaGetLastError();
  });
#else
  return std::async(std::launch::deferred, [] {});
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

#if GIGAREG_WITH_CUDA
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_error(ErrorKind::Cuda, what, cudaGetErrorString(e));
}

/// Host copy with the threads of the process: a single-threaded memcpy into fresh pageable memory
/// takes every page fault on one core.
void parallel_memcpy(void* dst, const void* src, std::size_t bytes) {
  constexpr std::size_t kPiece = std::size_t(4) << 20;
  const auto pieces = static_cast<std::int64_t>((bytes + kPiece - 1) / kPiece);
#pragma omp parallel for schedule(static)
  for (std::int64_t k = 0; k < pieces; ++k) {
    const std::size_t off = std::size_t(k) * kPiece;
    std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                std::min(kPiece, bytes - off));
  }
}

/// Copies of at least kStagedCopyBytes between pageable host memory and the device go through two
/// pinned chunks: the DMA of one chunk overlaps the threads' copy of the other. cudaMemcpy from or
/// to pageable memory stages through the driver's own pinned buffer on one thread and first-touches
/// every destination page on that thread too (measured on H100: 15 GB of results in 17 s).
constexpr std::size_t kStagedCopyBytes = std::size_t(64) << 20;
constexpr std::size_t kStagedChunk = std::size_t(64) << 20;

// Two pinned chunks, a stream and two events, made on the first staged copy and kept for the
// process (pinning costs milliseconds per call), released at exit. Made after the CUDA runtime
// started, this object is destroyed before the runtime's own teardown; errors there are ignored.
struct StagingBuffers {
  void* pinned[2] = {nullptr, nullptr};
  cudaStream_t stream = nullptr;
  cudaEvent_t ready[2] = {nullptr, nullptr};
  StagingBuffers() {
    for (void*& p : pinned) check(cudaMallocHost(&p, kStagedChunk), "copy_bytes: pinned staging buffer");
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "copy_bytes: staging stream");
    for (cudaEvent_t& e : ready) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "copy_bytes: event");
  }
  ~StagingBuffers() {
    for (cudaEvent_t e : ready)
      if (e != nullptr) (void)cudaEventDestroy(e);
    if (stream != nullptr) (void)cudaStreamDestroy(stream);
    for (void* p : pinned)
      if (p != nullptr) (void)cudaFreeHost(p);
  }
  StagingBuffers(const StagingBuffers&) = delete;
  StagingBuffers& operator=(const StagingBuffers&) = delete;
};

void staged_copy(void* dst, MemorySpace dst_space, const void* src, std::size_t bytes) {
  static std::mutex mutex;  // one staged copy at a time
  std::lock_guard<std::mutex> lock(mutex);
  static StagingBuffers staging;
  void* const* pinned = staging.pinned;
  const cudaStream_t stream = staging.stream;
  cudaEvent_t* ready = staging.ready;
  // copy_bytes is synchronous: work queued on any stream before it must be done (the staging
  // stream does not wait for other streams by itself).
  check(cudaDeviceSynchronize(), "copy_bytes");
  const bool to_host = dst_space == MemorySpace::Host;
  const std::size_t chunks = (bytes + kStagedChunk - 1) / kStagedChunk;
  auto size_of_chunk = [&](std::size_t k) { return std::min(kStagedChunk, bytes - k * kStagedChunk); };
  if (to_host) {
    // DMA chunk k into buffer k % 2 while the threads empty buffer (k - 1) % 2.
    for (std::size_t k = 0; k <= chunks; ++k) {
      if (k < chunks)
        check(cudaMemcpyAsync(pinned[k % 2], static_cast<const char*>(src) + k * kStagedChunk,
                              size_of_chunk(k), cudaMemcpyDeviceToHost, stream), "copy_bytes");
      if (k < chunks) check(cudaEventRecord(ready[k % 2], stream), "copy_bytes");
      if (k > 0) {
        const std::size_t j = k - 1;
        check(cudaEventSynchronize(ready[j % 2]), "copy_bytes");
        parallel_memcpy(static_cast<char*>(dst) + j * kStagedChunk, pinned[j % 2], size_of_chunk(j));
      }
    }
  } else {
    // The threads fill buffer k % 2 (once its previous DMA is done) while the other one is sent.
    for (std::size_t k = 0; k < chunks; ++k) {
      if (k >= 2) check(cudaEventSynchronize(ready[k % 2]), "copy_bytes");
      parallel_memcpy(pinned[k % 2], static_cast<const char*>(src) + k * kStagedChunk, size_of_chunk(k));
      check(cudaMemcpyAsync(static_cast<char*>(dst) + k * kStagedChunk, pinned[k % 2], size_of_chunk(k),
                            cudaMemcpyHostToDevice, stream), "copy_bytes");
      check(cudaEventRecord(ready[k % 2], stream), "copy_bytes");
    }
  }
  check(cudaStreamSynchronize(stream), "copy_bytes");
}

/// True when `p` is pinned (page-locked) host memory: cudaMemcpy is fast from it already.
bool is_pinned(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}

}  // namespace
#endif

void copy_bytes(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_space == MemorySpace::Host && src_space == MemorySpace::Host) {
    std::memcpy(dst, src, bytes);
    return;
  }
#if GIGAREG_WITH_CUDA
  if (bytes >= kStagedCopyBytes && dst_space != src_space) {
    const void* host = dst_space == MemorySpace::Host ? dst : src;
    if (!is_pinned(host)) {
      staged_copy(dst, dst_space, src, bytes);
      return;
    }
  }
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

#pragma once
// Raw allocation and copies in host or device memory. Volume<T> is built on these; kernels and
// the distributed layer use them for scratch buffers.

#include <cstddef>
#include <future>
#include <string>

namespace gigareg {

enum class MemorySpace { Host, Device };

const char* to_string(MemorySpace space);

/// True when the library was built with CUDA and a device is visible.
bool cuda_available();

/// Creates the CUDA context of the calling thread's current device on a background thread (the
/// first CUDA call of a process costs 0.2-0.5 s), so that the caller can read files meanwhile;
/// the returned future is ready when the context exists. Without CUDA or a device it does
/// nothing; errors are left for the first real CUDA call to report.
std::future<void> start_cuda_context();

/// Bytes that can still be allocated in `space` (host: MemAvailable; device: cudaMemGetInfo).
std::size_t available_bytes(MemorySpace space);

/// Throws Error(OutOfMemory) naming `where` if `bytes` exceed what is available in `space`.
void require_available(std::size_t bytes, MemorySpace space, const std::string& where);

/// 256-byte aligned allocation (host) or cudaMalloc (device). Throws Error(OutOfMemory) or
/// Error(Cuda) naming `where` on failure. Zero bytes gives nullptr.
void* allocate_bytes(std::size_t bytes, MemorySpace space, const std::string& where);
void free_bytes(void* ptr, MemorySpace space) noexcept;

/// memcpy / cudaMemcpy in any direction; synchronous with respect to the host.
void copy_bytes(void* dst, MemorySpace dst_space, const void* src, MemorySpace src_space,
                std::size_t bytes);

/// memset(0) / cudaMemset(0); synchronous with respect to the host.
void zero_bytes(void* dst, MemorySpace space, std::size_t bytes);

}  // namespace gigareg

#pragma once
// Raw allocation and copies in host or device memory. Volume<T> is built on these; kernels and
// the distributed layer use them for scratch buffers.

#include <cstddef>
#include <string>

namespace gigareg {

enum class MemorySpace { Host, Device };

const char* to_string(MemorySpace space);

/// True when the library was built with CUDA and a device is visible.
bool cuda_available();

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

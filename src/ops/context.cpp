#include "gigareg/ops/context.hpp"

#include <string>

#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/scratch.hpp"

#if GIGAREG_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gigareg {

const char* to_string(Backend backend) { return backend == Backend::Cpu ? "cpu" : "cuda"; }

std::vector<double> reduce_slices(const Context& ctx, const SlicePartials& partials) {
  std::vector<double> host(std::size_t(partials.slices) * partials.terms);
  if (ctx.backend == Backend::Cpu) {
    std::copy(partials.data, partials.data + host.size(), host.begin());
  } else {
#if GIGAREG_WITH_CUDA
    auto stream = static_cast<cudaStream_t>(ctx.stream);
    cudaError_t e = cudaMemcpyAsync(host.data(), partials.data, host.size() * sizeof(double),
                                    cudaMemcpyDeviceToHost, stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) throw_error(ErrorKind::Cuda, "reduce_slices", cudaGetErrorString(e));
#else
    throw_error(ErrorKind::Cuda, "reduce_slices", "gigareg was built without CUDA");
#endif
  }
  std::vector<double> total(partials.terms, 0.0);
  for (index_t s = 0; s < partials.slices; ++s)
    for (int t = 0; t < partials.terms; ++t) total[t] += host[std::size_t(s) * partials.terms + t];
  return total;
}

void require_backend_memory(const Context& ctx, const char* op, const void* pointer) {
  if (pointer == nullptr) throw_error(ErrorKind::InvalidArgument, op, "a required view is empty");
#if GIGAREG_WITH_CUDA
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, pointer) != cudaSuccess) {
    (void)cudaGetLastError();
    attr.type = cudaMemoryTypeUnregistered;
  }
  const bool on_device = attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
  if (ctx.backend == Backend::Cuda && !on_device)
    throw_error(ErrorKind::InvalidArgument, op, "the cuda backend needs device memory");
  if (ctx.backend == Backend::Cpu && attr.type == cudaMemoryTypeDevice)
    throw_error(ErrorKind::InvalidArgument, op, "the cpu backend needs host memory");
#else
  if (ctx.backend == Backend::Cuda)
    throw_error(ErrorKind::Cuda, op, "gigareg was built without CUDA");
#endif
}

void* allocate_scratch(const Context& ctx, std::size_t bytes, const char* what) {
  if (bytes == 0) return nullptr;
  if (ctx.backend == Backend::Cpu) return allocate_bytes(bytes, MemorySpace::Host, what);
#if GIGAREG_WITH_CUDA
  void* p = nullptr;
  const cudaError_t e = cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(ctx.stream));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw_error(e == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda, what,
                "cudaMallocAsync of " + std::to_string(bytes) + " bytes failed: " + cudaGetErrorString(e));
  }
  return p;
#else
  throw_error(ErrorKind::Cuda, what, "gigareg was built without CUDA");
#endif
}

void free_scratch(const Context& ctx, void* ptr) noexcept {
  if (ptr == nullptr) return;
  if (ctx.backend == Backend::Cpu) {
    free_bytes(ptr, MemorySpace::Host);
    return;
  }
#if GIGAREG_WITH_CUDA
  (void)cudaFreeAsync(ptr, static_cast<cudaStream_t>(ctx.stream));
#endif
}

}  // namespace gigareg

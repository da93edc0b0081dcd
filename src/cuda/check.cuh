#pragma once
// Checking every CUDA call and launch. Only included by kernels/*.cu and CUDA-aware src files.
#include <cuda_runtime.h>

#include <string>

#include "gigareg/error.hpp"

namespace gigareg::cuda_detail {

inline void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e != cudaSuccess)
    throw_error(e == cudaErrorMemoryAllocation ? ErrorKind::OutOfMemory : ErrorKind::Cuda,
                std::string(what) + " (" + file + ":" + std::to_string(line) + ")",
                cudaGetErrorString(e));
}

/// Blocks for a 1-D launch over n elements, capped so the grid stays in range (kernels use a
/// grid-stride loop over 64-bit indices).
inline unsigned blocks_for(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > 65535LL * 32) b = 65535LL * 32;
  return static_cast<unsigned>(b);
}

}  // namespace gigareg::cuda_detail

/// Checks a CUDA runtime call.
#define GIGAREG_CUDA_CHECK(call) ::gigareg::cuda_detail::check((call), #call, __FILE__, __LINE__)
/// Checks the launch that just happened (configuration errors); asynchronous faults surface at
/// the next checked call. Never synchronises.
#define GIGAREG_CUDA_CHECK_LAUNCH(name) \
  ::gigareg::cuda_detail::check(cudaGetLastError(), "launch of " name, __FILE__, __LINE__)

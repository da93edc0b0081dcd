#pragma once
// Temporary buffers for ops, in the backend's memory: 256-byte aligned host memory for the CPU
// backend, stream-ordered device memory (cudaMallocAsync / cudaFreeAsync on ctx.stream) for CUDA,
// so that an op never synchronises the host to get or release its scratch. Internal to the
// library (src/ and kernels/).
#include <cstddef>

#include "gigareg/ops/context.hpp"

namespace gigareg {

void* allocate_scratch(const Context& ctx, std::size_t bytes, const char* what);
void free_scratch(const Context& ctx, void* ptr) noexcept;

/// `count` elements of T, released on scope exit (also when a later launch check throws).
template <class T>
class Scratch {
 public:
  Scratch(const Context& ctx, std::size_t count, const char* what = "scratch")
      : ctx_(ctx), data_(static_cast<T*>(allocate_scratch(ctx, count * sizeof(T), what))) {}
  ~Scratch() { free_scratch(ctx_, data_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() const { return data_; }

 private:
  Context ctx_;
  T* data_;
};

}  // namespace gigareg

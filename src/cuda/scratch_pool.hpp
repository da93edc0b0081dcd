#pragma once
// Small stream-ordered scratch of the CUDA ops (per-tile or per-row-group partial sums: at most a
// few MB) from a per-device pool that keeps what is freed. The default pool returns freed memory
// to the driver at every synchronisation (release threshold 0), and mapping it again at the next
// allocation cost a 512^3 LNCC call 0.05-0.10 ms on the H100. The ops' larger scratch stays with
// allocate_scratch (src/ops/scratch.hpp) and the default pool. Internal to the library.
#include <cstddef>

namespace gigareg::cuda {

/// `bytes` of device memory, ordered on `stream` (a cudaStream_t); null for 0 bytes.
void* small_scratch_alloc(std::size_t bytes, void* stream);
/// Releases small_scratch_alloc's memory on `stream` (null: nothing).
void small_scratch_free(void* ptr, void* stream) noexcept;

/// small_scratch_alloc's memory as `count` elements of T, released on scope exit.
template <class T>
class SmallScratch {
 public:
  SmallScratch(std::size_t count, void* stream)
      : stream_(stream), data_(static_cast<T*>(small_scratch_alloc(count * sizeof(T), stream))) {}
  ~SmallScratch() { small_scratch_free(data_, stream_); }
  SmallScratch(const SmallScratch&) = delete;
  SmallScratch& operator=(const SmallScratch&) = delete;
  T* data() const { return data_; }

 private:
  void* stream_;
  T* data_;
};

}  // namespace gigareg::cuda

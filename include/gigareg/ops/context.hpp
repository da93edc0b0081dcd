#pragma once
// Where an op runs. Every op takes a Context first; its views must live in the matching memory
// space (Cpu: host, Cuda: device). Ops never synchronise the host with the device: results that
// the host needs (loss values, reductions) are written to buffers in the op's memory space and
// read with an explicit call (reduce_slices), which is where a sync happens.

#include <vector>

#include "gigareg/device/view.hpp"
#include "gigareg/memory.hpp"

namespace gigareg {

enum class Backend { Cpu, Cuda };

const char* to_string(Backend backend);

struct Context {
  Backend backend = Backend::Cpu;
  void* stream = nullptr;  // a cudaStream_t for Backend::Cuda; nullptr is the default stream

  static Context cpu() { return {Backend::Cpu, nullptr}; }
  static Context cuda(void* stream = nullptr) { return {Backend::Cuda, stream}; }
  MemorySpace memory_space() const {
    return backend == Backend::Cpu ? MemorySpace::Host : MemorySpace::Device;
  }
};

/// Reductions (loss sums, affine gradients, counts) are written as per-z-slice partials:
/// `terms` doubles for each z slice of the owned box, laid out [slice][term], in the op's memory
/// space. Each slice's partial is summed in a fixed order, and the slices are summed in index
/// order by reduce_slices, so the total is independent of thread count, launch shape, and of
/// sharding into z-slabs (ranks gather slice partials in order).
struct SlicePartials {
  double* data = nullptr;
  index_t slices = 0;
  int terms = 1;
};

/// Sums slice partials in slice order on the host (copying from the device first): the one
/// place an op's reduction synchronises with the host. Returns `terms` totals.
std::vector<double> reduce_slices(const Context& ctx, const SlicePartials& partials);

/// Throws Error(InvalidArgument) naming `op` unless every view is non-null and in the memory
/// space of ctx's backend (checked with cudaPointerGetAttributes on CUDA builds).
void require_backend_memory(const Context& ctx, const char* op, const void* pointer);

}  // namespace gigareg

#pragma once
// Shared machinery for the GPU benchmarks.
//
// Every benchmark states the fewest bytes its op must move (each input read once, each output
// written once) and divides by the device copy bandwidth measured in the same process (a large
// device-to-device cudaMemcpy, counting read + write bytes): that is the floor. Reported
// counters: GVox/s, effective GB/s (floor bytes / time), time over floor, peak device bytes per
// voxel (allocated by the benchmark's state, from cudaMemGetInfo deltas).
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "gigareg/volume.hpp"

namespace gigareg::bench {

/// Copy bandwidth in bytes/s (read + write), measured once per process on 1 GiB buffers.
double device_copy_bandwidth();

/// Sizes swept: 128^3, 256^3, 512^3 and, where `bytes_per_voxel` says it fits in 90% of free
/// device memory, the largest cube that fits (rounded down to a multiple of 32).
std::vector<int64_t> cube_sizes(double bytes_per_voxel);

/// Device memory in use right now (total - free), bytes.
std::size_t device_bytes_in_use();

/// A smooth pattern plus hashed noise in [lo, hi], filled on the device (support_fill.cu): no
/// host memory at gigavoxel sizes, and never zeros (benchmarks must not run on zeros).
Volume<float> random_device_volume(const Geometry& g, int components, std::uint64_t seed,
                                   float lo, float hi);

/// Times `op` with CUDA events after a warm-up: each iteration records one timed launch of op
/// and reports it as manual time; sets the standard counters.
void run_timed(benchmark::State& state, index_t voxels, double floor_bytes,
               std::size_t baseline_device_bytes, const std::function<void()>& op);

}  // namespace gigareg::bench

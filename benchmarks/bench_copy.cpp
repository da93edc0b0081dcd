// The reference ceiling: device-to-device copy bandwidth (read + write bytes) at the sizes the
// op benchmarks use. Every op's floor is its minimal bytes over this bandwidth.
#include "support.hpp"

#include "cuda/check.cuh"

namespace {

void BM_DeviceCopy(benchmark::State& state) {
  using namespace gigareg;
  const int64_t n = state.range(0);
  Geometry g;
  g.size = {n, n, n};
  const std::size_t base = bench::device_bytes_in_use();
  Volume<float> a = bench::random_device_volume(g, 1, 1, 0.0f, 1.0f);
  Volume<float> b(g, 1, MemorySpace::Device);
  bench::run_timed(state, a.voxel_count(), 2.0 * double(a.bytes()), base, [&] {
    GIGAREG_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), a.bytes(), cudaMemcpyDeviceToDevice));
  });
}
BENCHMARK(BM_DeviceCopy)->Arg(128)->Arg(256)->Arg(512)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

// The CC texture mask on the GPU (src/cuda/texture_mask.hpp): one thread per voxel recomputes
// its window sums in the CPU reference's order (gigareg/device/texture.hpp). A (2r + 1)^3 window
// reads 125 values for r = 2, nearly all from L1/L2: at 1.5 Gvox this is about 0.2 Tflop of
// double adds and no more DRAM traffic than the image once and the mask twice, against seconds
// for the host's pass plus a download and an upload.
#include <cuda_runtime.h>

#include "cuda/check.cuh"
#include "cuda/texture_mask.hpp"
#include "gigareg/device/texture.hpp"

namespace gigareg::cuda {
namespace {

constexpr int kThreads = 128;

__global__ void texture_mask_kernel(VolumeView<const float> image, VolumeView<const float> mask,
                                    VolumeView<float> out, Box box, int radius, double min_variance) {
  const index_t i = box.lo.x + index_t(blockIdx.y) * kThreads + threadIdx.x;
  if (i >= box.lo.x + box.size.x) return;
  const index_t rows = box.size.y * box.size.z;
  for (index_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const index_t j = box.lo.y + row % box.size.y;
    const index_t k = box.lo.z + row / box.size.y;
    const double var = window_variance(image, image.global_size, i, j, k, radius);
    const bool keep = var >= min_variance && (mask.data == nullptr || mask.at(i, j, k) > 0.5f);
    out.at(i, j, k) = keep ? 1.0f : 0.0f;
  }
}

}  // namespace

void texture_mask(void* stream, VolumeView<const float> image, VolumeView<const float> mask,
                  VolumeView<float> out, const Box& out_box, int radius, double min_variance) {
  if (out_box.empty()) return;
  const index_t tiles = (out_box.size.x + kThreads - 1) / kThreads;
  GIGAREG_REQUIRE(tiles <= 65535, "the box is too wide");
  const index_t rows = out_box.size.y * out_box.size.z < 0x7fffffff ? out_box.size.y * out_box.size.z
                                                                    : 0x7fffffff;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(tiles));
  texture_mask_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      image, mask, out, out_box, radius, min_variance);
  GIGAREG_CUDA_CHECK_LAUNCH("texture_mask_kernel");
}

}  // namespace gigareg::cuda

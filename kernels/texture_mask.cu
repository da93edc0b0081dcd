// The CC texture mask on the GPU (src/cuda/texture_mask.hpp): one thread per voxel recomputes
// its window sums in the CPU reference's order (gigareg/device/texture.hpp), launched by the
// element-wise executor. A (2r + 1)^3 window reads 125 values for r = 2, nearly all from L1/L2:
// at 1.5 Gvox about 0.2 Tflop of double adds and little more DRAM traffic than the image once and
// the mask and the output once each, against seconds for the host's pass plus a download and an
// upload.
#include "cuda/texture_mask.hpp"
#include "elementwise.cuh"
#include "gigareg/device/texture.hpp"

namespace gigareg::cuda {
namespace {

struct TextureTest {
  VolumeView<const float> image, mask;
  VolumeView<float> out;
  int radius;
  double min_variance;
  __device__ void operator()(index_t i, index_t j, index_t k, int) const {
    const double var = window_variance(image, image.global_size, i, j, k, radius);
    const bool keep = var >= min_variance && (mask.data == nullptr || mask.at(i, j, k) > 0.5f);
    out.at(i, j, k) = keep ? 1.0f : 0.0f;
  }
};

}  // namespace

void texture_mask(void* stream, VolumeView<const float> image, VolumeView<const float> mask,
                  VolumeView<float> out, const Box& out_box, int radius, double min_variance) {
  if (out_box.empty()) return;
  launch_elementwise(stream, out_box, 1, TextureTest{image, mask, out, radius, min_variance},
                     "texture_mask");
}

}  // namespace gigareg::cuda

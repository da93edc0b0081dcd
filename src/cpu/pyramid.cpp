// CPU reference of trilinear resampling between grids (OpenMP over rows of the owned box). The
// per-voxel map and interpolation are device/gaussian.hpp's, shared with kernels/pyramid.cu.

#include "gigareg/device/gaussian.hpp"

namespace gigareg::cpu {

void resample_trilinear(VolumeView<const float> src, VolumeView<float> dst, const Box& dst_owned,
                        const Affined& dst_to_src) {
  if (dst_owned.empty()) return;
  const index_t rows = dst_owned.size.y * dst_owned.size.z;
#pragma omp parallel for schedule(static)
  for (index_t row = 0; row < rows; ++row) {
    const index_t j = dst_owned.lo.y + row % dst_owned.size.y;
    const index_t k = dst_owned.lo.z + row / dst_owned.size.y;
    for (index_t i = dst_owned.lo.x; i < dst_owned.lo.x + dst_owned.size.x; ++i) {
      const TrilinearStencil st = trilinear_stencil(src, map_index(dst_to_src, i, j, k));
      for (int c = 0; c < dst.components; ++c)
        dst.at(i, j, k, c) = trilinear_apply(st, src.data + c * src.component_stride);
    }
  }
}

}  // namespace gigareg::cpu

#pragma once
// gaussian_smooth with an explicit z-chunk size: the pass plan of src/ops/smooth.cpp, exposed so
// that tests can cut small volumes into many chunks (the chunk size never changes a bit of the
// result). Internal to the library and its tests.

#include "gigareg/ops/smooth.hpp"

namespace gigareg {

/// gaussian_smooth with z-chunks of about `chunk_voxels` voxels of the first pass's region (at
/// least one plane; in place, at least the z radius).
void gaussian_smooth_chunked(const Context& ctx, VolumeView<const float> in, VolumeView<float> out,
                             Vec3d sigma_voxels, const Box& owned, double truncation,
                             index_t chunk_voxels);

}  // namespace gigareg

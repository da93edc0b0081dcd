#pragma once
// CUDA side of the warp ops (kernels/warp.cu). Called only by src/ops/warp.cpp after it has
// checked the arguments; every launch goes on `stream`, no host synchronisation.

#include "gigareg/device/warp.hpp"

namespace gigareg::cuda {

void warp(void* stream, const WarpPlan& plan, VolumeView<const float> moving,
          VolumeView<const float> displacement, VolumeView<float> out, const Box& owned,
          Interpolation interpolation, Boundary boundary);

/// grad_u and affine_partials (kAffineTerms per slice of owned, device memory) are optional.
void warp_backward(void* stream, const WarpPlan& plan, VolumeView<const float> moving,
                   VolumeView<const float> displacement, VolumeView<const float> grad_out,
                   const Box& owned, Boundary boundary, VolumeView<float> grad_u,
                   double* affine_partials);

}  // namespace gigareg::cuda

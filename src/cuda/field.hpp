#pragma once
// CUDA side of the displacement-field ops (kernels/field.cu). Called only by src/ops/field.cpp
// after it has checked the arguments; every launch goes on `stream`, no host synchronisation
// (except copy_to_host, which is the explicit read-back of max_over_slices).

#include <cstddef>

#include "gigareg/device/field.hpp"

namespace gigareg::cuda {

void compose(void* stream, const ComposePlan& plan, VolumeView<const float> v,
             VolumeView<const float> u, VolumeView<float> out, const Box& owned,
             Boundary boundary);

void exp_field(void* stream, const ComposePlan& plan, VolumeView<const float> v, int steps,
               VolumeView<float> out, Boundary boundary);

void invert(void* stream, const ComposePlan& plan, VolumeView<const float> u,
            VolumeView<const float> initial, VolumeView<float> out, const Box& owned,
            int iterations, float tolerance, Boundary boundary, double* residual);

void jacobian_determinant(void* stream, VolumeView<const float> u, const Mat3f& inverse_index_map,
                          VolumeView<float> det, const Box& owned, double* nonpositive);

/// partials: 2 terms per slice of owned, [largest, sum] of |P^-1 e| (voxels).
void residual_norms(void* stream, VolumeView<const float> e, const Mat3f& inverse_index_map,
                    const Box& owned, double* partials);

void damped_inverse_step(void* stream, VolumeView<const float> e, VolumeView<float> w,
                         const Mat3f& inverse_index_map, float epsilon, float clip,
                         bool pin_boundary, const Box& owned);

void newton_direction(void* stream, VolumeView<float> e, VolumeView<const float> w,
                      const Mat3f& inverse_index_map, const Box& owned);

void zero_boundary(void* stream, VolumeView<float> field, const Box& owned);

/// Copies device memory to the host, ordered on `stream`, and waits for it.
void copy_to_host(void* stream, void* host, const void* device, std::size_t bytes);

}  // namespace gigareg::cuda

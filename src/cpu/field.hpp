#pragma once
// CPU reference of the displacement-field ops (src/cpu/field.cpp). Called only by
// src/ops/field.cpp after it has checked the arguments.

#include "gigareg/device/field.hpp"

namespace gigareg::cpu {

/// out = R i + r0 + M v + u(Q i + q0 + G v) on owned; v optional (null data: 0).
void compose(const ComposePlan& plan, VolumeView<const float> v, VolumeView<const float> u,
             VolumeView<float> out, const Box& owned, Boundary boundary);

/// Scaling and squaring over the whole grid; `plan` maps the grid to itself (identity affine).
void exp_field(const ComposePlan& plan, VolumeView<const float> v, int steps, VolumeView<float> out,
               Boundary boundary);

/// residual (optional): 2 terms per slice of owned, [max residual, count above tolerance].
void invert(const ComposePlan& plan, VolumeView<const float> u, VolumeView<const float> initial,
            VolumeView<float> out, const Box& owned, int iterations, float tolerance,
            Boundary boundary, double* residual);

/// partials: 2 terms per slice of owned, [largest, sum] of |P^-1 e| (voxels) over the slice.
void residual_norms(VolumeView<const float> e, const Mat3f& inverse_index_map, const Box& owned,
                    double* partials);

/// w <- damped_inverse_voxel(w, e, |P^-1 e|, epsilon, clip) on owned; 0 on the grid's outermost
/// layer when pin_boundary.
void damped_inverse_step(VolumeView<const float> e, VolumeView<float> w,
                         const Mat3f& inverse_index_map, float epsilon, float clip,
                         bool pin_boundary, const Box& owned);

/// e <- (I + dw/dx) e on owned (jacobian_times_voxel); w: halo 1 (clipped).
void newton_direction(VolumeView<float> e, VolumeView<const float> w, const Mat3f& inverse_index_map,
                      const Box& owned);

/// field <- 0 on the voxels of owned on the grid's outermost layer.
void zero_boundary(VolumeView<float> field, const Box& owned);

/// det (optional) on owned; nonpositive (optional): 1 term per slice of owned.
void jacobian_determinant(VolumeView<const float> u, const Mat3f& inverse_index_map,
                          VolumeView<float> det, const Box& owned, double* nonpositive);

}  // namespace gigareg::cpu

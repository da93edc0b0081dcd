#pragma once
// CUDA side of the optimiser ops (kernels/optim.cu); called by src/ops/optim.cpp after its
// argument checks. Launches on `stream`; nothing synchronises.

#include "gigareg/device/adam.hpp"

namespace gigareg::cuda {

void adam_moments(void* stream, VolumeView<const float> grad, VolumeView<float> m,
                  VolumeView<float> v, const AdamCoefficients& c, const Box& owned);
void adam_step(void* stream, VolumeView<const float> m, VolumeView<const float> v,
               VolumeView<float> step, const AdamCoefficients& c, const Box& owned);
/// add: out += s * step, else out = s * step; s = float(*scale) when scale is non-null.
/// Moments in float or bfloat16.
void adam_update(void* stream, VolumeView<const float> grad, VolumeView<float> m,
                 VolumeView<float> v, VolumeView<float> out, const AdamCoefficients& c,
                 const Box& owned, bool add, const double* scale);
void adam_update(void* stream, VolumeView<const float> grad, VolumeView<bfloat16> m,
                 VolumeView<bfloat16> v, VolumeView<float> out, const AdamCoefficients& c,
                 const Box& owned, bool add, const double* scale);
void scale_field(void* stream, VolumeView<float> field, const double* scale, const Box& owned);
/// partials[k - owned.lo.z] = max norm over slice k (device memory, owned.size.z doubles).
void max_norm_partials(void* stream, VolumeView<const float> field, const Box& owned,
                       double* partials);
/// *result = max of partials[0..slices) (0 if none); with as_scale, target / max(that, floor).
void reduce_max(void* stream, const double* partials, index_t slices, double* result,
                bool as_scale, double target, double floor);

}  // namespace gigareg::cuda

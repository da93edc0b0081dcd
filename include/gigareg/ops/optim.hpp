#pragma once
// Optimiser pieces for displacement fields (three component planes, see device/view.hpp):
// Adam moments and step, a fused Adam update that touches every array once, the global max-norm
// of a vector field as deterministic slice partials, and scaling by a scalar that lives in the
// backend's memory (so a normaliser computed on the device needs no host synchronisation).
//
// Every op is element-wise on the voxels of `owned` (no halo): each view must contain `owned`,
// all views must live on the same global grid and have the same number of components (the
// max-norm needs exactly 3). Only the voxels of `owned` are written.
//
// Adam (Kingma & Ba), per element, t = params.step (1 for the first update):
//   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
//   step = -lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
// The step is the descent direction already (u += step lowers the loss). The bias corrections
// are computed in double on the host and folded into float constants (AdamCoefficients); the
// element-wise math (device/adam.hpp) is float, the same operations on both backends.

#include <cstdint>

#include "gigareg/device/adam.hpp"
#include "gigareg/ops/context.hpp"

namespace gigareg {

struct AdamParams {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  std::int64_t step = 1;  // t: the number of this update, counting from 1 (bias correction)
};

/// The float constants of step `params.step`; throws InvalidArgument for lr <= 0, beta outside
/// [0, 1), eps < 0, t < 1 or non-finite values.
AdamCoefficients adam_coefficients(const AdamParams& params);

/// m, v updated in place from the gradient g (unfused piece 1).
void adam_moments(const Context& ctx, VolumeView<const float> grad, VolumeView<float> m,
                  VolumeView<float> v, const AdamParams& params, const Box& owned);

/// step = the Adam step from the (already updated) moments (unfused piece 2).
void adam_step(const Context& ctx, VolumeView<const float> m, VolumeView<const float> v,
               VolumeView<float> step, const AdamParams& params, const Box& owned);

enum class StepOutput {
  Write,  // out = s * step
  Add,    // out += s * step (apply the step to the displacement directly)
};

/// The fused update: reads g, updates m and v in place, and writes (or adds) the step, each
/// array touched once per element. When device_scale is non-null the step is multiplied by
/// float(*device_scale), a double in the backend's memory read by the kernel (no host sync).
/// Bitwise equal to adam_moments, adam_step, scale_field (and a float add for Add) in sequence.
/// `out` may be the gradient's memory (the step replaces the gradient; each element is read
/// before it is written), never the moments'.
void adam_update(const Context& ctx, VolumeView<const float> grad, VolumeView<float> m,
                 VolumeView<float> v, VolumeView<float> out, const AdamParams& params,
                 const Box& owned, StepOutput mode = StepOutput::Write,
                 const double* device_scale = nullptr);

/// The same update with the moments stored as bfloat16 (device/bfloat16.hpp): each moment is
/// widened to float, updated and used for the step in float exactly as above, and rounded to
/// nearest on store. Half the moments' memory (6 instead of 12 bytes per voxel each for a
/// field). The rounding (relative error up to 2^-8) bounds how slowly a moment can follow its
/// average: a per-step change below half a unit in the last place is lost, so (1 - beta) must
/// exceed about 2^-8, i.e. beta1, beta2 <= 0.996 (checked); with beta2 = 0.999 use float moments.
void adam_update(const Context& ctx, VolumeView<const float> grad, VolumeView<bfloat16> m,
                 VolumeView<bfloat16> v, VolumeView<float> out, const AdamParams& params,
                 const Box& owned, StepOutput mode = StepOutput::Write,
                 const double* device_scale = nullptr);

/// The largest beta the bfloat16 moments accept (see above).
inline constexpr double kBfloat16MaxBeta = 0.996;

/// field *= float(*device_scale) on owned, every component; device_scale in the backend's memory.
void scale_field(const Context& ctx, VolumeView<float> field, const double* device_scale,
                 const Box& owned);

/// Max over the voxels of each z slice of `owned` of the Euclidean norm of the 3-vector (in
/// double, vector_norm in device/adam.hpp). partials: slices == owned.size.z, terms == 1, in the
/// backend's memory. A max does not depend on order: exact and deterministic, and the same under
/// any sharding (ranks gather slice partials, or all-reduce their max).
void max_norm_partials(const Context& ctx, VolumeView<const float> field, const Box& owned,
                       SlicePartials partials);

/// The max over slices (0 for no slices), copied to the host: the one synchronising call.
double reduce_slices_max(const Context& ctx, const SlicePartials& partials);

/// The same max written to *device_result in the backend's memory, without synchronising.
void reduce_slices_max_device(const Context& ctx, const SlicePartials& partials,
                              double* device_result);

/// A step normaliser on the device, no sync: *device_scale = target / max(max_slices, floor).
/// E.g. the max-norm of the step in partials, target = half a voxel in mm and floor = that same
/// half voxel caps the largest step at half a voxel; target = 1 and a tiny floor normalises the
/// largest vector to norm 1. target and floor must be finite, floor > 0.
void max_norm_scale_device(const Context& ctx, const SlicePartials& partials, double target,
                           double floor, double* device_scale);

}  // namespace gigareg

#pragma once
// The halos that the registration's stages read around a process's owned box, in one place:
// the metric's (images and mask), a displacement field's when it is sampled at x + d(x), and a
// Gaussian smoothing's.

#include "gigareg/geometry.hpp"
#include "gigareg/registration_params.hpp"

namespace gigareg::reg {

/// The halos of the fixed and warped images, and of the mask, that a metric reads around the
/// owned box: the metric op's own (CC: lncc_input_halo / lncc_mask_halo in ops/loss.hpp).
Index3 metric_image_halo(const MetricParams& m);
Index3 metric_mask_halo(const MetricParams& m);

/// The halo a field on `g` needs to be sampled at x + d(x), |d| <= bound_mm: the field ops'
/// displacement_sample_halo (ops/field.hpp).
Index3 displacement_halo(const Geometry& g, double bound_mm);

/// The halo of a Gaussian smoothing of `sigma` voxels on every axis (0 for sigma <= 0).
Index3 smoothing_halo(double sigma);

/// The largest of two halos, per axis.
Index3 max_halo(Index3 a, Index3 b);

}  // namespace gigareg::reg

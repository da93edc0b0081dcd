#pragma once
// Known transforms for phantom experiments: a smooth displacement field with a given amplitude
// and an affine close to identity, both reproducible from a seed. The demo, the accuracy tests
// and the scaling benchmarks deform real images with these to get pairs with ground truth.

#include <cstdint>

#include "gigareg/device/math.hpp"
#include "gigareg/volume.hpp"

namespace gigareg {

struct SmoothDeformationSpec {
  double max_displacement_mm = 4.0;  // largest |u| over the grid (reached approximately)
  double wavelength_mm = 60.0;       // shortest wavelength of the sinusoidal modes
  int modes = 4;                     // sinusoidal modes per component
  std::uint64_t seed = 1;
};

/// A smooth displacement field (physical mm, 3 planes, host) on `grid`: per component a sum of
/// sinusoidal modes with random directions and phases, wavelengths between wavelength_mm and
/// twice that, scaled so that the largest |u| is max_displacement_mm. With wavelength_mm well
/// above 2*pi*max_displacement_mm the map x -> x + u(x) is a diffeomorphism.
Volume<float> make_smooth_deformation(const Geometry& grid, const SmoothDeformationSpec& spec);

/// A physical affine about `center`: rotations (degrees, about x, y, z), scales and a
/// translation (mm); y = R S (x - c) + c + t.
Affined make_affine(Vec3d rotation_deg, Vec3d scale, Vec3d translation_mm, Vec3d center);

}  // namespace gigareg

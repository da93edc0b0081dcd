#pragma once
// The images of a pyramid level: the full-resolution inputs in the backend's memory, and a level
// image blurred and resampled from them on a box of the level grid (or borrowed at full
// resolution).

#include "gigareg/ops/context.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/volume.hpp"

namespace gigareg::reg {

/// A volume that is either borrowed (the full-resolution host image at shrink 1 without
/// smoothing, on the CPU backend) or owned (a level image on a box of the level grid).
struct LevelImage {
  Volume<float> owned;
  const Volume<float>* borrowed = nullptr;
  const Volume<float>& get() const { return borrowed ? *borrowed : owned; }
  bool present() const { return borrowed != nullptr || !owned.empty(); }
  VolumeView<const float> view() const {
    return present() ? get().view() : VolumeView<const float>{};
  }
};

/// The full-resolution inputs in the backend's memory, the backend and the partition of the grids.
/// One process: the whole images. Several: each holds the planes of the fixed image (and mask)
/// that its level slabs need (registration_input_planes) and its own slab of planes of the
/// moving image (and mask); the moving windows fetch the planes they need from their owners.
struct Inputs {
  Context ctx;
  const Partition* part = nullptr;
  const Volume<float>* fixed = nullptr;
  const Volume<float>* moving = nullptr;
  const Volume<float>* fixed_mask = nullptr;   // may be null
  const Volume<float>* moving_mask = nullptr;  // may be null
};

/// The whole x-y planes of the full-resolution grid `fine` that the level image on `box` of
/// `level_geometry` reads (blur radius and linear taps included).
Box source_planes(const Geometry& fine, const Geometry& level_geometry, const Box& box, Vec3d sigma);

/// Level image of the full-resolution `source` (backend memory, holding source_planes) on `box`
/// of `level_geometry`: blurred by sigma (voxels of the full grid) and resampled, or borrowed
/// when the level is the full grid without blur.
LevelImage level_image(const Context& ctx, const Volume<float>* source, const Geometry& level_geometry,
                       const Box& box, Vec3d sigma);

/// Sigma in voxels of the full-resolution grid `g` for an ANTs sigma (mm or voxels).
Vec3d sigma_voxels(const Geometry& g, double sigma, bool in_mm);

/// The smallest spacing of a grid.
double min_spacing(const Geometry& g);

}  // namespace gigareg::reg

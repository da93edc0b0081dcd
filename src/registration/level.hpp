#pragma once
// One pyramid level of a stage on this process: its fixed image and mask, the moving window, and
// the metric's intensity ranges.

#include <memory>

#include "gigareg/ops/loss.hpp"
#include "gigareg/registration_params.hpp"
#include "registration/level_image.hpp"
#include "registration/moving_window.hpp"

namespace gigareg::reg {

/// The images of one pyramid level on this process: the fixed image and mask on the owned box of
/// the level grid grown by the metric's halos, the moving image in a window.
struct Level {
  Geometry fixed_geometry;
  Box owned{};               // of the fixed level grid
  Index3 image_halo{0, 0, 0}, mask_halo{0, 0, 0};  // the metric's halos of fixed/warped, mask
  LevelImage fixed, fixed_mask;
  std::unique_ptr<MovingWindow> moving;
  IntensityRange fixed_range{0, 1}, moving_range{0, 1};  // global
  double min_spacing = 1.0;  // smallest spacing of the fixed level grid (mm)
  const Geometry& moving_geometry() const { return moving->geometry(); }
};

/// Level `lv` of a stage: blurs (the stage's sigma of the full-resolution grid, voxels or mm) and
/// shrinks every input on the boxes this process needs. For CC, the fixed mask of the level also
/// excludes the windows whose fixed-image standard deviation is below cc_min_std of the fixed
/// range (texture_mask). The ranges are global.
Level make_level(const Inputs& in, const StageParams& stage, int lv);

}  // namespace gigareg::reg

#pragma once
// Evaluation metrics on host volumes: label overlap and displacement errors.

#include <map>

#include "gigareg/volume.hpp"

namespace gigareg {

struct LabelOverlap {
  double dice = 0;
  index_t voxels_a = 0, voxels_b = 0, voxels_both = 0;
};

/// Dice overlap per label (labels are the integer values of the voxels, 0 = background is
/// skipped), over labels present in either volume. Both volumes must be on the same grid.
std::map<int, LabelOverlap> dice_per_label(const Volume<float>& a, const Volume<float>& b);

/// Mean Dice over labels present in both volumes with at least `min_voxels` voxels in each.
double mean_dice(const std::map<int, LabelOverlap>& overlaps, index_t min_voxels = 100);

}  // namespace gigareg

#include "gigareg/metrics.hpp"

#include <cmath>

#include "gigareg/error.hpp"

namespace gigareg {

std::map<int, LabelOverlap> dice_per_label(const Volume<float>& a, const Volume<float>& b) {
  GIGAREG_REQUIRE(a.space() == MemorySpace::Host && b.space() == MemorySpace::Host, "host volumes");
  GIGAREG_REQUIRE(a.geometry().size == b.geometry().size && a.voxel_count() == b.voxel_count(),
                  "label volumes must share a grid");
  std::map<int, LabelOverlap> out;
  const float* pa = a.data();
  const float* pb = b.data();
  for (index_t n = 0; n < a.voxel_count(); ++n) {
    const int la = int(std::lround(pa[n])), lb = int(std::lround(pb[n]));
    if (la != 0) ++out[la].voxels_a;
    if (lb != 0) ++out[lb].voxels_b;
    if (la != 0 && la == lb) ++out[la].voxels_both;
  }
  for (auto& [label, o] : out)
    o.dice = (o.voxels_a + o.voxels_b) > 0 ? 2.0 * double(o.voxels_both) / double(o.voxels_a + o.voxels_b) : 0.0;
  return out;
}

double mean_dice(const std::map<int, LabelOverlap>& overlaps, index_t min_voxels) {
  double sum = 0;
  int n = 0;
  for (const auto& [label, o] : overlaps)
    if (o.voxels_a >= min_voxels && o.voxels_b >= min_voxels) {
      sum += o.dice;
      ++n;
    }
  return n > 0 ? sum / n : 0.0;
}

}  // namespace gigareg

// Reductions over the processes of a partition (reductions.hpp).

#include "registration/reductions.hpp"

#include "gigareg/ops/optim.hpp"

namespace gigareg::reg {

IntensityRange global_range(const Context& ctx, const Partition& part, VolumeView<const float> image,
                            VolumeView<const float> mask, const Box& owned) {
  Partials p(owned.size.z, kRangeTerms, ctx.memory_space());
  intensity_range(ctx, image, mask, owned, p.view);
  const IntensityRange mine = reduce_intensity_range(ctx, p.view);
  IntensityRange r{part.min(mine.min), part.max(mine.max)};
  if (r.empty()) r = {0.0, 1.0};
  return r;
}

double global_max_norm(const Context& ctx, const Partition& part, const Volume<float>& field,
                       const Box& owned) {
  Partials p(owned.size.z, 1, ctx.memory_space());
  max_norm_partials(ctx, field.view(), owned, p.view);
  return part.max(reduce_slices_max(ctx, p.view));
}

GatheredPartials::GatheredPartials(const Context& ctx, const Partition& part, const Geometry& grid,
                                   const Box& owned, int terms)
    : part_(&part), space_(ctx.memory_space()), grid_z_(grid.size.z),
      local_(owned.size.z, terms, ctx.memory_space()) {
  if (part.size() > 1) global_ = Partials(grid.size.z, terms, ctx.memory_space());
}

SlicePartials GatheredPartials::gather() {
  if (part_->size() == 1) return local_.view;
  part_->gather_slices(local_.view, grid_z_, global_.view, space_);
  return global_.view;
}

}  // namespace gigareg::reg

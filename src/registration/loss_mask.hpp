#pragma once
// The loss mask of an iteration: the fixed mask and the moving mask sampled through the current
// transform.

#include "gigareg/ops/context.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/volume.hpp"
#include "registration/level_image.hpp"
#include "registration/moving_window.hpp"

namespace gigareg::reg {

/// The loss mask of an iteration on the owned box (with the metric's mask halo, exchanged): the
/// fixed mask, times the moving mask sampled through the current transform when there is one
/// (recomputed by update()).
class MaskCombiner {
 public:
  MaskCombiner(const Context& ctx, const Partition& part, const Geometry& fixed_geometry,
               const Box& owned, Index3 mask_halo, const LevelImage* fixed_mask,
               const MovingWindow* moving);
  /// The mask view to pass to the loss (empty view: no mask).
  VolumeView<const float> view() const;
  /// Refreshes the combination for T(x) = A(x + u(x)) (u may be empty).
  void update(const Affined& affine, VolumeView<const float> displacement);

 private:
  Context ctx_;
  const Partition* part_;
  Geometry grid_;
  Box owned_;
  Index3 halo_;
  const LevelImage* fixed_mask_;
  const MovingWindow* moving_;
  Volume<float> combined_;   // backend memory, when there is a moving mask
  Volume<float> sampled_;    // moving mask sampled into the fixed grid (backend, owned)
};

}  // namespace gigareg::reg

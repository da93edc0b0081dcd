// The loss mask of an iteration (loss_mask.hpp).

#include "registration/loss_mask.hpp"

#include "gigareg/ops/mask.hpp"
#include "gigareg/ops/warp.hpp"

namespace gigareg::reg {

MaskCombiner::MaskCombiner(const Context& ctx, const Partition& part, const Geometry& fixed_geometry,
                           const Box& owned, Index3 mask_halo, const LevelImage* fixed_mask,
                           const MovingWindow* moving)
    : ctx_(ctx), part_(&part), grid_(fixed_geometry), owned_(owned), halo_(mask_halo),
      fixed_mask_(fixed_mask), moving_(moving) {
  if (moving_ != nullptr && moving_->has_mask()) {
    combined_ = Volume<float>(grid_, part.halo_box(grid_.size, halo_), 1, ctx.memory_space());
    sampled_ = Volume<float>(grid_, owned_, 1, ctx.memory_space());
  }
}

VolumeView<const float> MaskCombiner::view() const {
  if (!combined_.empty()) return combined_.view();
  return fixed_mask_ ? fixed_mask_->view() : VolumeView<const float>{};
}

void MaskCombiner::update(const Affined& affine, VolumeView<const float> displacement) {
  if (combined_.empty()) return;
  WarpInputs w;
  w.moving = moving_->mask().view();
  w.moving_geometry = moving_->geometry();
  w.fixed_geometry = grid_;
  w.affine = affine;
  w.displacement = displacement;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::Zero;
  warp(ctx_, w, sampled_.view(), owned_);
  // The logical AND of the two masks on the owned box, where they live (no host round trip on
  // CUDA); the halo comes from the neighbours.
  const bool has_fixed = fixed_mask_ != nullptr && fixed_mask_->present();
  combine_masks(ctx_, sampled_.view(), has_fixed ? fixed_mask_->view() : VolumeView<const float>{},
                combined_.view(), owned_);
  part_->exchange_halos({&combined_}, halo_);
}

}  // namespace gigareg::reg

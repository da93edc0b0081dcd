// The loss mask of an iteration (loss_mask.hpp).

#include "registration/loss_mask.hpp"

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
  // The logical AND of the two masks on the owned box. There is no element-wise op for it, so on
  // CUDA the masks make a round trip through the host (moving masks are rare; this costs two
  // copies of one fixed-level slab per iteration). The halo comes from the neighbours.
  const bool host = ctx_.backend == Backend::Cpu;
  Volume<float> s = host ? Volume<float>() : sampled_.to(MemorySpace::Host);
  Volume<float> f;
  const bool has_fixed = fixed_mask_ != nullptr && fixed_mask_->present();
  if (!host && has_fixed) f = fixed_mask_->get().to(MemorySpace::Host);
  Volume<float> c = host ? Volume<float>() : combined_.to(MemorySpace::Host);
  const VolumeView<const float> sv = host ? sampled_.view() : s.view();
  const VolumeView<const float> fv = has_fixed ? (host ? fixed_mask_->view() : f.view()) : VolumeView<const float>{};
  VolumeView<float> cv = host ? combined_.view() : c.view();
#pragma omp parallel for schedule(static)
  for (index_t k = owned_.lo.z; k < owned_.lo.z + owned_.size.z; ++k)
    for (index_t j = owned_.lo.y; j < owned_.lo.y + owned_.size.y; ++j)
      for (index_t i = owned_.lo.x; i < owned_.lo.x + owned_.size.x; ++i)
        cv.at(i, j, k) = (sv.at(i, j, k) > 0.5f && (!has_fixed || fv.at(i, j, k) > 0.5f)) ? 1.0f : 0.0f;
  if (!host) copy_bytes(combined_.data(), MemorySpace::Device, c.data(), MemorySpace::Host, c.bytes());
  part_->exchange_halos({&combined_}, halo_);
}

}  // namespace gigareg::reg

// The moving image's window of a level (moving_window.hpp).

#include "registration/moving_window.hpp"

#include <algorithm>
#include <cmath>

#include "registration/buffers.hpp"

namespace gigareg::reg {

MovingWindow::MovingWindow(const Inputs& in, const Geometry& fixed_level, const Box& fixed_owned,
                           const Geometry& moving_level, Vec3d sigma)
    : in_(&in), fixed_level_(fixed_level), moving_level_(moving_level), fixed_owned_(fixed_owned),
      sigma_(sigma) {
  // One process: the whole grid, built once. Several: built by the first cover().
  if (in.part->size() == 1) build(whole(moving_level_));
}

Box MovingWindow::needed(const Affined& affine, double bound_mm) const {
  // Continuous moving index c(x) = L(x + u), L = (moving physical -> index) o A. Over the owned
  // voxel centres x (a parallelepiped in physical space, L maps its corners' hull onto the hull of
  // their images) and |u| <= bound: per axis, [min, max] over the corners -/+ bound * |row of L|.
  const Affined l = compose(moving_level_.physical_to_index_map(), affine);
  const Affined p = fixed_level_.index_to_physical_map();
  Vec3d lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
  for (int corner = 0; corner < 8; ++corner) {
    Vec3d idx;
    for (int a = 0; a < 3; ++a)
      idx[a] = double((corner >> a) & 1 ? fixed_owned_.lo[a] + fixed_owned_.size[a] - 1 : fixed_owned_.lo[a]);
    const Vec3d c = l(p(idx));
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::min(lo[a], c[a]);
      hi[a] = std::max(hi[a], c[a]);
    }
  }
  Box b;
  for (int a = 0; a < 3; ++a) {
    const double row = std::sqrt(l.matrix(a, 0) * l.matrix(a, 0) + l.matrix(a, 1) * l.matrix(a, 1) +
                                 l.matrix(a, 2) * l.matrix(a, 2));
    const double reach = bound_mm * row;
    // floor for the lower linear tap, +1 for the upper one, one voxel for float rounding.
    const double first = std::floor(lo[a] - reach) - 1.0;
    const double last = std::floor(hi[a] + reach) + 2.0;
    const double n = double(moving_level_.size[a]);
    const index_t from = index_t(std::clamp(first, 0.0, n));
    const index_t to = index_t(std::clamp(last + 1.0, 0.0, n));
    b.lo[a] = from;
    b.size[a] = std::max<index_t>(0, to - from);
  }
  return b;
}

bool MovingWindow::covers(const Affined& affine, double bound_mm) const {
  if (image_.present() && box_ == whole(moving_level_)) return true;
  const Box need = needed(affine, bound_mm);
  return image_.present() && (need.empty() || box_.contains(need));
}

void MovingWindow::cover(const Affined& affine, double bound_mm) {
  const Partition& part = *in_->part;
  const bool ok = covers(affine, bound_mm);
  // With several processes the windows' planes come from their owners: a collective step that
  // every process joins as soon as one of them needs a new window.
  if (part.size() > 1 && part.all(ok)) return;
  if (part.size() == 1 && ok) return;
  if (ok) {
    serve();
    return;
  }
  // A margin of 8 level voxels on every side (and the bound), so that the next iterations'
  // small moves stay inside.
  Box b = needed(affine, bound_mm);
  for (int a = 0; a < 3; ++a) {
    const index_t lo = std::max<index_t>(0, b.lo[a] - 8);
    const index_t hi = std::min<index_t>(moving_level_.size[a], b.lo[a] + b.size[a] + 8);
    b.lo[a] = lo;
    b.size[a] = std::max<index_t>(1, hi - lo);
    if (b.lo[a] + b.size[a] > moving_level_.size[a]) b.lo[a] = moving_level_.size[a] - b.size[a];
  }
  build(b);
}

void MovingWindow::build(const Box& box) {
  box_ = box;
  const Partition& part = *in_->part;
  const Context& ctx = in_->ctx;
  // Masks are resampled without blurring: a level voxel counts where most of it is inside.
  const Vec3d no_blur{0, 0, 0};
  if (part.size() == 1) {  // the whole image is here
    image_ = level_image(ctx, in_->moving, moving_level_, box, sigma_);
    mask_ = level_image(ctx, in_->moving_mask, moving_level_, box, no_blur);
  } else {
    const Geometry& fine = in_->moving->geometry();
    source_ = part.fetch(*in_->moving, source_planes(fine, moving_level_, box, sigma_));
    image_ = level_image(ctx, &source_, moving_level_, box, sigma_);
    if (!image_.borrowed) source_ = Volume<float>();
    if (in_->moving_mask != nullptr) {
      mask_source_ = part.fetch(*in_->moving_mask, source_planes(fine, moving_level_, box, no_blur));
      mask_ = level_image(ctx, &mask_source_, moving_level_, box, no_blur);
      if (!mask_.borrowed) mask_source_ = Volume<float>();
    }
  }
  ++rebuilds_;
}

void MovingWindow::serve() {
  const Partition& part = *in_->part;
  (void)part.fetch(*in_->moving, Box{});
  if (in_->moving_mask != nullptr) (void)part.fetch(*in_->moving_mask, Box{});
}

}  // namespace gigareg::reg

#pragma once
// The moving image of a level on the window of its grid that this process's fixed slab maps
// into.

#include "gigareg/geometry.hpp"
#include "registration/level_image.hpp"

namespace gigareg::reg {

/// The moving image (and mask) of one level on a window of its grid: the part that the fixed
/// slab of this process maps into under T(x) = A(x + u(x)) with |u| <= bound. With one process
/// the window is the whole grid. cover() rebuilds the window whenever the transform outgrows it,
/// with a margin, so the warp never samples outside it; the full-resolution planes it needs come
/// from the processes that own them (cover is collective: every process calls it, and all join
/// the fetch when one needs a new window). The result does not depend on the window, only the
/// work and the communication do: per rebuild about the window's planes, never per iteration.
class MovingWindow {
 public:
  MovingWindow(const Inputs& in, const Geometry& fixed_level, const Box& fixed_owned,
               const Geometry& moving_level, Vec3d sigma);
  /// True when the window holds every sample (and its linear taps) of the owned fixed voxels.
  bool covers(const Affined& affine, double bound_mm) const;
  /// Makes the window cover the transform (rebuilding it with a margin when it does not).
  /// Collective.
  void cover(const Affined& affine, double bound_mm);
  const LevelImage& image() const { return image_; }
  const LevelImage& mask() const { return mask_; }
  /// Whether there is a moving mask (its window is built with the image's).
  bool has_mask() const { return in_->moving_mask != nullptr; }
  const Geometry& geometry() const { return moving_level_; }
  Box box() const { return box_; }
  int rebuilds() const { return rebuilds_; }

 private:
  Box needed(const Affined& affine, double bound_mm) const;
  void build(const Box& box);
  void serve();  // another process rebuilds: send it this process's planes

  const Inputs* in_;
  Geometry fixed_level_, moving_level_;
  Box fixed_owned_;
  Vec3d sigma_;
  Box box_{};
  Volume<float> source_, mask_source_;  // fetched full-resolution planes (several processes)
  LevelImage image_, mask_;
  int rebuilds_ = 0;
};

}  // namespace gigareg::reg

#pragma once
// The step of a deformable stage on one displacement field and one level: smoothing of the
// metric's gradient, Adam or ANTs' normalised gradient, composition into the field and its
// smoothing (the greedy and SyN stages run one per field).

#include <cstdint>
#include <memory>

#include "gigareg/device/bfloat16.hpp"
#include "gigareg/ops/context.hpp"
#include "gigareg/ops/warp.hpp"
#include "gigareg/partition.hpp"
#include "gigareg/registration_params.hpp"
#include "gigareg/volume.hpp"
#include "registration/buffers.hpp"
#include "registration/level_image.hpp"
#include "registration/reductions.hpp"

namespace gigareg::reg {

/// Whether a deformable stage steps with Adam (else ANTs' normalised gradient).
bool uses_adam(const StageParams& s);

/// `field` (on `from`, box containing its owned box there) resampled onto `to` on `box` (which
/// contains the owned box of `to`), or re-boxed when the grids agree; zeros when there is none.
/// The coarse voxels under `box` come from their owners (a collective call).
Volume<float> field_on_grid(const Context& ctx, const Partition& part, Volume<float>&& field,
                            const Geometry& from, const Geometry& to, const Box& box);

/// The warp of `image` (on `image_geometry`) into `out_geometry` through A(x + d(x)): linear,
/// zero outside.
WarpInputs warp_inputs(const LevelImage& image, const Geometry& image_geometry,
                       const Geometry& out_geometry, const Affined& affine,
                       VolumeView<const float> displacement);

/// The optimiser state and scratch of one field on one level, on this process's owned box.
/// Memory: one work field (the metric's gradient, dL/du, its smoothed copy, the update and the
/// composed field take turns in it, each op writing over the one before: smoothing, Adam and the
/// composition run in place) and Adam's two moments (bfloat16 by default): with u, 36 bytes per
/// voxel (48 with float moments). The work field and u share one box (owned plus the largest halo
/// any of their uses needs), so that they trade places without copies.
class FieldStepper {
 public:
  FieldStepper(const Context& ctx, const Partition& part, const Geometry& g, const Box& owned,
               const StageParams& stage, double min_spacing);
  ~FieldStepper();

  /// The box a field must have (owned and the halos).
  Box field_box() const { return box_; }
  /// The largest displacement one update adds to the field (mm).
  double update_norm() const { return target_; }

  /// Where the metric writes dS/dW (owned box, one component): the first component plane of the
  /// work field, which warp_backward then overwrites with dL/du voxel by voxel (each voxel's dS/dW
  /// is read before its dL/du is written), so the metric's gradient needs no volume of its own.
  VolumeView<float> metric_gradient();

  /// dL/du goes here (warp_backward writes it on the owned box).
  VolumeView<float> gradient() { return work_.view(); }

  /// Takes one step on `field` (box field_box()) from the gradient in gradient():
  /// field <- G_sigmaWarp * (s + field o (x + s)), s = step(1, false).
  void apply(Volume<float>& field);

  /// The update of one iteration, from the gradient in gradient(), left in the work field (owned
  /// box) and returned: the gradient smoothed with the stage's gradient sigma, with
  /// `pin_boundary` set to 0 on the grid's outermost voxel layer (ANTs' SyN), then either
  /// normalised (ANTs) or Adam's step, scaled to the largest norm update_norm(); times `sign`.
  /// With sign 1 it descends the loss as a field sampled at x + s (u <- s + u o (x + s)).
  VolumeView<float> step(double sign, bool pin_boundary);

 private:
  template <class T>
  struct Moments;

  void scale_to(Volume<float>& f, double target);
  void compose_and_smooth(Volume<float>& field);

  Context ctx_;
  const Partition* part_;
  Geometry g_;
  Box owned_;
  const StageParams& stage_;
  double target_;
  Index3 grad_halo_, field_halo_, composed_halo_;
  Box box_;
  Volume<float> work_;
  std::unique_ptr<Moments<bfloat16>> moments_bf16_;
  std::unique_ptr<Moments<float>> moments_f32_;
  GatheredPartials norms_;
  Buffer<double> scale_;
  std::int64_t t_ = 0;
};

}  // namespace gigareg::reg

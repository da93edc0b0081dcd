// The step of a deformable stage on one field (field_stepper.hpp).

#include "registration/field_stepper.hpp"

#include <utility>

#include "gigareg/ops/field.hpp"
#include "gigareg/ops/optim.hpp"
#include "gigareg/ops/pyramid.hpp"
#include "gigareg/ops/smooth.hpp"
#include "registration/halos.hpp"

namespace gigareg::reg {
namespace {

/// The largest displacement of one update (mm): step * (smallest level spacing).
double update_bound(const StageParams& stage, double min_spacing) { return stage.step * min_spacing; }

}  // namespace

bool uses_adam(const StageParams& s) {
  if (s.optimizer == FieldOptimizer::Auto) return s.transform == TransformType::Greedy;
  return s.optimizer == FieldOptimizer::Adam;
}

Volume<float> field_on_grid(const Context& ctx, const Partition& part, Volume<float>&& field,
                            const Geometry& from, const Geometry& to, const Box& box) {
  if (field.empty()) return zeros(to, box, 3, ctx.memory_space());
  if (from.equals(to)) {
    if (field.box() == box) return std::move(field);
    return part.fetch(field, box);
  }
  const Volume<float> source = part.fetch(field, resample_source_box(from, to, box));
  Volume<float> out(to, box, 3, ctx.memory_space());
  pyramid_upsample_field(ctx, source.view(), from, out.view(), to, box);
  return out;
}

WarpInputs warp_inputs(const LevelImage& image, const Geometry& image_geometry,
                       const Geometry& out_geometry, const Affined& affine,
                       VolumeView<const float> displacement) {
  WarpInputs w;
  w.moving = image.view();
  w.moving_geometry = image_geometry;
  w.fixed_geometry = out_geometry;
  w.affine = affine;
  w.displacement = displacement;
  w.interpolation = Interpolation::Linear;
  w.boundary = Boundary::Zero;
  return w;
}

/// Adam's two moments of a field on the owned box, stored as float or bfloat16.
template <class T>
struct FieldStepper::Moments {
  Volume<T> m, v;
  Moments(const Geometry& g, const Box& owned, MemorySpace space)
      : m(zeros<T>(g, owned, 3, space)), v(zeros<T>(g, owned, 3, space)) {}
};

FieldStepper::FieldStepper(const Context& ctx, const Partition& part, const Geometry& g,
                           const Box& owned, const StageParams& stage, double min_spacing)
    : ctx_(ctx),
      part_(&part),
      g_(g),
      owned_(owned),
      stage_(stage),
      target_(update_bound(stage, min_spacing)),
      grad_halo_(smoothing_halo(stage.gradient_sigma)),
      field_halo_(displacement_halo(g, target_)),
      composed_halo_(smoothing_halo(stage.field_sigma)),
      box_(part.halo_box(g.size, max_halo(max_halo(grad_halo_, field_halo_), composed_halo_))),
      work_(g, box_, 3, ctx.memory_space()),
      norms_(ctx, part, g, owned, 1),
      scale_(1, ctx.memory_space(), "step scale") {
  if (uses_adam(stage) && stage.adam_bfloat16_moments)
    moments_bf16_ = std::make_unique<Moments<bfloat16>>(g, owned, ctx.memory_space());
  else if (uses_adam(stage))
    moments_f32_ = std::make_unique<Moments<float>>(g, owned, ctx.memory_space());
}

FieldStepper::~FieldStepper() = default;

VolumeView<float> FieldStepper::metric_gradient() {
  VolumeView<float> w = work_.view();
  VolumeView<float> out = w;
  out.data = &w.at(owned_.lo.x, owned_.lo.y, owned_.lo.z, 0);
  out.extent = owned_.size;
  out.box_lo = owned_.lo;
  out.components = 1;
  return out;
}

void FieldStepper::apply(Volume<float>& field) {
  step(1.0, false);
  compose_and_smooth(field);
}

VolumeView<float> FieldStepper::step(double sign, bool pin_boundary) {
  if (stage_.gradient_sigma > 0) {
    const double s = stage_.gradient_sigma;
    part_->exchange_halos({&work_}, grad_halo_);
    gaussian_smooth(ctx_, work_.view(), work_.view(), Vec3d{s, s, s}, owned_);
  }
  if (pin_boundary) zero_field_boundary(ctx_, work_.view(), g_, owned_);
  if (!uses_adam(stage_)) {
    // s = -(step h) g / max|g|
    scale_to(work_, -sign * target_);
    return work_.view();
  }
  // Adam on g / max|g|, then s = (step h) a / max|a|; the step replaces the gradient.
  scale_to(work_, 1.0);
  AdamParams ap;
  ap.learning_rate = 1.0;
  ap.beta1 = stage_.adam_beta1;
  ap.beta2 = stage_.adam_beta2;
  ap.eps = stage_.adam_epsilon;
  ap.step = ++t_;
  if (moments_bf16_)
    adam_update(ctx_, work_.view(), moments_bf16_->m.view(), moments_bf16_->v.view(), work_.view(),
                ap, owned_, StepOutput::Write);
  else
    adam_update(ctx_, work_.view(), moments_f32_->m.view(), moments_f32_->v.view(), work_.view(),
                ap, owned_, StepOutput::Write);
  scale_to(work_, sign * target_);
  return work_.view();
}

/// f <- f * target / max|f| (global max; the scale stays on the device).
void FieldStepper::scale_to(Volume<float>& f, double target) {
  max_norm_partials(ctx_, f.view(), owned_, norms_.local());
  max_norm_scale_device(ctx_, norms_.gather(), target, 1e-30, scale_.data());
  scale_field(ctx_, f.view(), scale_.data(), owned_);
}

/// field <- G_sigmaWarp * (s + field o (x + s)) with s in the work field: the composition
/// replaces s (each voxel's s is read before it is written; the field is sampled elsewhere),
/// is smoothed in place, and trades places with the field, whose memory becomes the work field.
void FieldStepper::compose_and_smooth(Volume<float>& field) {
  part_->exchange_halos({&field}, field_halo_);
  compose_fields(ctx_, work_.view(), g_, field.view(), g_, work_.view(), owned_);
  if (stage_.field_sigma > 0) {
    const double sg = stage_.field_sigma;
    part_->exchange_halos({&work_}, composed_halo_);
    gaussian_smooth(ctx_, work_.view(), work_.view(), Vec3d{sg, sg, sg}, owned_);
  }
  std::swap(field, work_);  // the same box
}

}  // namespace gigareg::reg

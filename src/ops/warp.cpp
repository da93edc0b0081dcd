// Dispatch of the warp ops: argument checks, the host-side fold of the geometry chain into one
// float affine (make_warp_plan), then the CPU reference or the CUDA kernels.

#include "gigareg/ops/warp.hpp"

#include <cmath>
#include <string>

#include "cpu/bspline.hpp"
#include "cpu/warp.hpp"
#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/common.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/warp.hpp"
#endif

namespace gigareg {
namespace {

using namespace ops_detail;

/// A view in ctx's memory with `components` components, on a grid of `grid` size, whose box lies
/// in the grid and contains `needed` (when given).
void check_common(const Context& ctx, const char* op, const WarpInputs& in, const Box& owned) {
  in.fixed_geometry.validate(std::string(op) + ": fixed geometry");
  in.moving_geometry.validate(std::string(op) + ": moving geometry");
  const Index3 fixed = in.fixed_geometry.size;
  if (!Box{{0, 0, 0}, fixed}.contains(owned) || owned.size.x < 0 || owned.size.y < 0 ||
      owned.size.z < 0)
    fail(op, "owned box " + describe(owned) + " is not inside the fixed grid");
  check_view(ctx, op, "moving", in.moving, 1, in.moving_geometry.size, nullptr);
  if (in.displacement.data)
    check_view(ctx, op, "displacement", in.displacement, 3, fixed, &owned);
  for (double a : in.affine.matrix.m)
    if (!std::isfinite(a)) fail(op, "the affine matrix is not finite");
  for (int a = 0; a < 3; ++a)
    if (!std::isfinite(in.affine.offset[a])) fail(op, "the affine offset is not finite");
}

}  // namespace

WarpPlan make_warp_plan(const Geometry& fixed, const Geometry& moving, const Affined& affine) {
  const Affined pf = fixed.index_to_physical_map();
  const Affined pm_inv = moving.physical_to_index_map();
  const Affined q = compose(pm_inv, compose(affine, pf));
  WarpPlan plan{};
  plan.index_matrix = to_float(q.matrix);
  plan.index_offset = to_float(q.offset);
  plan.displacement_matrix = to_float(pm_inv.matrix * affine.matrix);
  plan.fixed_matrix = to_float(pf.matrix);
  plan.fixed_origin = cast<float>(pf.offset);
  plan.moving_gradient_matrix = to_float(transpose(pm_inv.matrix));
  return plan;
}

void warp(const Context& ctx, const WarpInputs& in, VolumeView<float> out, const Box& owned) {
  constexpr const char* op = "warp";
  check_common(ctx, op, in, owned);
  check_view(ctx, op, "out", out, 1, in.fixed_geometry.size, &owned);
  if (owned.empty()) return;
  if (in.outside_value != 0.f && in.boundary != Boundary::FieldTransform)
    fail(op, "an outside value other than 0 needs Boundary::FieldTransform (ITK's resampler rule)");
  WarpPlan plan = make_warp_plan(in.fixed_geometry, in.moving_geometry, in.affine);
  plan.outside_value = in.outside_value;
  if (in.interpolation == Interpolation::BSpline) {
    // The prefilter runs along whole lines of the moving grid; the taps reach 2 voxels away.
    if (ctx.backend != Backend::Cpu) fail(op, "BSpline interpolation runs on the cpu backend");
    if (in.boundary != Boundary::FieldTransform)
      fail(op, "BSpline interpolation is ITK's resampler: it needs Boundary::FieldTransform");
    if (!(in.moving.box() == Box{{0, 0, 0}, in.moving_geometry.size}))
      fail(op, "BSpline interpolation needs the whole moving grid in the moving view");
    const Volume<double> coefficients = cpu::bspline3_coefficients(in.moving);
    cpu::warp_bspline(plan, coefficients.view(), in.displacement, out, owned, in.boundary);
    return;
  }
  if (ctx.backend == Backend::Cpu) {
    cpu::warp(plan, in.moving, in.displacement, out, owned, in.interpolation, in.boundary);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::warp(ctx.stream, plan, in.moving, in.displacement, out, owned, in.interpolation,
             in.boundary);
#else
  throw_error(ErrorKind::Cuda, op, "gigareg was built without CUDA");
#endif
}

void warp_backward(const Context& ctx, const WarpInputs& in, VolumeView<const float> grad_out,
                   const Box& owned, const WarpGradients& grads) {
  constexpr const char* op = "warp_backward";
  check_common(ctx, op, in, owned);
  if (in.interpolation != Interpolation::Linear)
    fail(op, "the gradient is defined for linear interpolation only");
  check_view(ctx, op, "grad_out", grad_out, 1, in.fixed_geometry.size, &owned);
  if (grads.displacement.data)
    check_view(ctx, op, "grad displacement", grads.displacement, 3, in.fixed_geometry.size, &owned);
  if (grads.affine.data) {
    require_backend_memory(ctx, op, grads.affine.data);
    if (grads.affine.terms != kAffineTerms || grads.affine.slices != owned.size.z)
      fail(op, "affine partials must have 12 terms and one slice per z slice of the owned box");
  }
  if (grads.moving.data) {
    if (ctx.backend != Backend::Cpu)
      fail(op, "the gradient w.r.t. the moving image is offered on the cpu backend only");
    check_view(ctx, op, "grad moving", grads.moving, 1, in.moving_geometry.size, nullptr);
    if (!(grads.moving.box() == in.moving.box()))
      fail(op, "the moving-image gradient must have the moving view's box");
  }
  if (owned.empty()) return;
  const WarpPlan plan = make_warp_plan(in.fixed_geometry, in.moving_geometry, in.affine);
  if (ctx.backend == Backend::Cpu) {
    cpu::warp_backward(plan, in.moving, in.displacement, grad_out, owned, in.boundary,
                       grads.displacement, grads.affine.data, grads.moving);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::warp_backward(ctx.stream, plan, in.moving, in.displacement, grad_out, owned, in.boundary,
                      grads.displacement, grads.affine.data);
#else
  throw_error(ErrorKind::Cuda, op, "gigareg was built without CUDA");
#endif
}

}  // namespace gigareg

// Dispatch of the displacement-field ops: argument checks, the host-side fold of grid and affine
// maps (make_compose_plan), then the CPU reference or the CUDA kernels.

#include "gigareg/ops/field.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cpu/field.hpp"
#include "gigareg/config.hpp"
#include "gigareg/error.hpp"
#include "ops/common.hpp"
#include "ops/scratch.hpp"

#if GIGAREG_WITH_CUDA
#include "cuda/field.hpp"
#endif

namespace gigareg {

Index3 displacement_sample_halo(const Geometry& g, double bound_mm) {
  GIGAREG_REQUIRE(bound_mm >= 0.0 && std::isfinite(bound_mm), "the displacement bound must be finite");
  const Mat3d m = g.physical_to_index_map().matrix;
  Index3 h;
  for (int a = 0; a < 3; ++a) {
    const double row = std::sqrt(m(a, 0) * m(a, 0) + m(a, 1) * m(a, 1) + m(a, 2) * m(a, 2));
    const double d = bound_mm * row;
    const double v = std::ceil(d + 1e-6 * (d + double(g.size[a])) + 1e-6) + 1.0;
    h[a] = index_t(std::min(v, double(g.size[a])));
  }
  return h;
}

namespace {

using namespace ops_detail;

void check_owned(const char* op, const Box& owned, Index3 grid) {
  if (owned.size.x < 0 || owned.size.y < 0 || owned.size.z < 0 ||
      !Box{{0, 0, 0}, grid}.contains(owned))
    fail(op, "owned box " + describe(owned) + " is not inside the grid");
}

void check_partials(const Context& ctx, const char* op, const SlicePartials& p, int terms,
                    const Box& owned) {
  require_backend_memory(ctx, op, p.data);
  if (p.terms != terms || p.slices != owned.size.z)
    fail(op, "slice partials must have " + std::to_string(terms) +
                 " term(s) and one slice per z slice of the owned box");
}

void check_affine(const char* op, const Affined& a) {
  for (double x : a.matrix.m)
    if (!std::isfinite(x)) fail(op, "the affine matrix is not finite");
  for (int i = 0; i < 3; ++i)
    if (!std::isfinite(a.offset[i])) fail(op, "the affine offset is not finite");
}

void run_compose(const Context& ctx, const char* op, VolumeView<const float> v,
                 const Geometry& grid, const Affined& affine, VolumeView<const float> u,
                 const Geometry& u_grid, VolumeView<float> out, const Box& owned,
                 Boundary boundary) {
  grid.validate(std::string(op) + ": grid");
  u_grid.validate(std::string(op) + ": u grid");
  check_affine(op, affine);
  check_owned(op, owned, grid.size);
  if (v.data) check_view(ctx, op, "v", v, 3, grid.size, &owned);
  check_view(ctx, op, "u", u, 3, u_grid.size, nullptr);
  check_view(ctx, op, "out", out, 3, grid.size, &owned);
  if (static_cast<const void*>(out.data) == static_cast<const void*>(u.data))
    fail(op, "out must not be the field sampled at arbitrary positions (u)");
  if (owned.empty()) return;
  const ComposePlan plan = make_compose_plan(grid, affine, u_grid);
  if (ctx.backend == Backend::Cpu) {
    cpu::compose(plan, v, u, out, owned, boundary);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::compose(ctx.stream, plan, v, u, out, owned, boundary);
#else
  no_cuda(op);
#endif
}

}  // namespace

ComposePlan make_compose_plan(const Geometry& grid, const Affined& affine, const Geometry& u_grid) {
  const Affined pf = grid.index_to_physical_map();
  const Affined pu_inv = u_grid.physical_to_index_map();
  const Affined q = compose(pu_inv, compose(affine, pf));
  Mat3d m_minus_i = affine.matrix;
  for (int a = 0; a < 3; ++a) m_minus_i(a, a) -= 1.0;
  ComposePlan plan{};
  plan.index_matrix = to_float(q.matrix);
  plan.index_offset = to_float(q.offset);
  plan.displacement_matrix = to_float(pu_inv.matrix * affine.matrix);
  plan.rest_matrix = to_float(m_minus_i * pf.matrix);
  plan.rest_offset = to_float(m_minus_i * pf.offset + affine.offset);
  plan.affine_matrix = to_float(affine.matrix);
  return plan;
}

void compose_fields(const Context& ctx, VolumeView<const float> v, const Geometry& grid,
                    const Affined& affine, VolumeView<const float> u, const Geometry& u_grid,
                    VolumeView<float> out, const Box& owned, Boundary boundary) {
  run_compose(ctx, "compose_fields", v, grid, affine, u, u_grid, out, owned, boundary);
}

void compose_fields(const Context& ctx, VolumeView<const float> v, const Geometry& grid,
                    VolumeView<const float> u, const Geometry& u_grid, VolumeView<float> out,
                    const Box& owned, Boundary boundary) {
  run_compose(ctx, "compose_fields", v, grid, Affined::identity(), u, u_grid, out, owned, boundary);
}

void resample_field(const Context& ctx, VolumeView<const float> u, const Geometry& u_grid,
                    const Geometry& grid, VolumeView<float> out, const Box& owned,
                    Boundary boundary) {
  run_compose(ctx, "resample_field", {}, grid, Affined::identity(), u, u_grid, out, owned,
              boundary);
}

void exp_field(const Context& ctx, VolumeView<const float> v, const Geometry& grid, int steps,
               VolumeView<float> out, Boundary boundary) {
  constexpr const char* op = "exp_field";
  grid.validate(std::string(op) + ": grid");
  if (steps < 0 || steps > 30) fail(op, "steps must be in [0, 30]");
  const Box whole{{0, 0, 0}, grid.size};
  check_view(ctx, op, "v", v, 3, grid.size, &whole);
  check_view(ctx, op, "out", out, 3, grid.size, &whole);
  const ComposePlan plan = make_compose_plan(grid, Affined::identity(), grid);
  if (ctx.backend == Backend::Cpu) {
    cpu::exp_field(plan, v, steps, out, boundary);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::exp_field(ctx.stream, plan, v, steps, out, boundary);
#else
  no_cuda(op);
#endif
}

void invert_field(const Context& ctx, VolumeView<const float> u, const Geometry& u_grid,
                  const Geometry& grid, VolumeView<float> out, const Box& owned,
                  const InverseOptions& options, VolumeView<const float> initial,
                  SlicePartials residual) {
  constexpr const char* op = "invert_field";
  grid.validate(std::string(op) + ": grid");
  u_grid.validate(std::string(op) + ": u grid");
  check_owned(op, owned, grid.size);
  check_view(ctx, op, "u", u, 3, u_grid.size, nullptr);
  check_view(ctx, op, "out", out, 3, grid.size, &owned);
  if (initial.data) check_view(ctx, op, "initial", initial, 3, grid.size, &owned);
  if (residual.data) check_partials(ctx, op, residual, 2, owned);
  if (static_cast<const void*>(out.data) == static_cast<const void*>(u.data))
    fail(op, "out must not be the field being inverted");
  if (options.iterations < 0) fail(op, "iterations must not be negative");
  if (!(options.tolerance >= 0) || !std::isfinite(options.tolerance))
    fail(op, "tolerance must be a finite non-negative number");
  if (owned.empty()) return;
  const ComposePlan plan = make_compose_plan(grid, Affined::identity(), u_grid);
  const float tol = float(options.tolerance);
  if (ctx.backend == Backend::Cpu) {
    cpu::invert(plan, u, initial, out, owned, options.iterations, tol, options.boundary,
                residual.data);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::invert(ctx.stream, plan, u, initial, out, owned, options.iterations, tol, options.boundary,
               residual.data);
#else
  no_cuda(op);
#endif
}

DampedInverseReport invert_field_damped(const Context& ctx, VolumeView<const float> u,
                                        const Geometry& grid, VolumeView<float> w,
                                        const DampedInverseOptions& options,
                                        VolumeView<float> scratch) {
  constexpr const char* op = "invert_field_damped";
  grid.validate(std::string(op) + ": grid");
  const Box whole{{0, 0, 0}, grid.size};
  check_view(ctx, op, "u", u, 3, grid.size, &whole);
  check_view(ctx, op, "w", w, 3, grid.size, &whole);
  if (scratch.data) check_view(ctx, op, "scratch", scratch, 3, grid.size, &whole);
  const void* pu = u.data;
  if (pu == static_cast<const void*>(w.data) || pu == static_cast<const void*>(scratch.data) ||
      (scratch.data && scratch.data == w.data))
    fail(op, "u, w and scratch must be three different fields");
  if (options.iterations < 0) fail(op, "iterations must not be negative");
  if (!(options.mean_tolerance >= 0) || !std::isfinite(options.mean_tolerance) ||
      !(options.max_tolerance >= 0) || !std::isfinite(options.max_tolerance))
    fail(op, "tolerances must be finite non-negative numbers");
  DampedInverseReport report;
  const index_t n = whole.voxel_count();
  if (n == 0 || options.iterations == 0) return report;
  Scratch<float> own(ctx, scratch.data ? 0 : std::size_t(3 * n), "invert_field_damped residual");
  VolumeView<float> e = scratch;
  if (!e.data) {
    const Index3 g = grid.size;
    e = VolumeView<float>{own.data(), g, {1, g.x, g.x * g.y}, n, 3, {0, 0, 0}, g};
  }
  Scratch<double> partial_memory(ctx, std::size_t(2 * grid.size.z), "invert_field_damped partials");
  const SlicePartials partials{partial_memory.data(), grid.size.z, 2};
  const Mat3f to_voxels = to_float(grid.physical_to_index_map().matrix);
  double max_error = std::numeric_limits<double>::infinity(), mean_error = max_error;
  while (report.iterations < options.iterations && max_error > options.max_tolerance &&
         mean_error > options.mean_tolerance) {
    run_compose(ctx, op, w, grid, Affined::identity(), u, grid, e, whole, options.boundary);
    if (ctx.backend == Backend::Cpu) {
      cpu::residual_norms(e, to_voxels, whole, partials.data);
    } else {
#if GIGAREG_WITH_CUDA
      cuda::residual_norms(ctx.stream, e, to_voxels, whole, partials.data);
#else
      no_cuda(op);
#endif
    }
    max_error = max_over_slices(ctx, partials, 0);
    mean_error = reduce_slices(ctx, partials)[1] / double(n);
    if (options.newton) {
      if (ctx.backend == Backend::Cpu) {
        cpu::newton_direction(e, w, to_voxels, whole);
      } else {
#if GIGAREG_WITH_CUDA
        cuda::newton_direction(ctx.stream, e, w, to_voxels, whole);
#else
        no_cuda(op);
#endif
      }
    }
    // ITK: a first, larger step from what is often a rough estimate, then half steps.
    const float epsilon = report.iterations == 0 ? 0.75f : 0.5f;
    ++report.iterations;
    const float clip = float(double(epsilon) * max_error);
    if (ctx.backend == Backend::Cpu) {
      cpu::damped_inverse_step(e, w, to_voxels, epsilon, clip, options.pin_boundary, whole);
    } else {
#if GIGAREG_WITH_CUDA
      cuda::damped_inverse_step(ctx.stream, e, w, to_voxels, epsilon, clip, options.pin_boundary,
                                whole);
#else
      no_cuda(op);
#endif
    }
  }
  report.max_error = max_error;
  report.mean_error = mean_error;
  return report;
}

void zero_field_boundary(const Context& ctx, VolumeView<float> field, const Geometry& grid,
                         const Box& owned) {
  constexpr const char* op = "zero_field_boundary";
  grid.validate(std::string(op) + ": grid");
  check_owned(op, owned, grid.size);
  check_view(ctx, op, "field", field, 3, grid.size, &owned);
  if (owned.empty()) return;
  if (ctx.backend == Backend::Cpu) {
    cpu::zero_boundary(field, owned);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::zero_boundary(ctx.stream, field, owned);
#else
  no_cuda(op);
#endif
}

void jacobian_determinant(const Context& ctx, VolumeView<const float> u, const Geometry& grid,
                          VolumeView<float> det, const Box& owned, SlicePartials nonpositive) {
  constexpr const char* op = "jacobian_determinant";
  grid.validate(std::string(op) + ": grid");
  check_owned(op, owned, grid.size);
  const Box halo = owned.grown_within(Index3{1, 1, 1}, grid.size);
  check_view(ctx, op, "u", u, 3, grid.size, owned.empty() ? nullptr : &halo);
  if (!det.data && !nonpositive.data) fail(op, "neither a determinant view nor partials given");
  if (det.data) check_view(ctx, op, "det", det, 1, grid.size, &owned);
  if (nonpositive.data) check_partials(ctx, op, nonpositive, 1, owned);
  if (owned.empty()) return;
  const Mat3f inverse_index_map = to_float(grid.physical_to_index_map().matrix);
  if (ctx.backend == Backend::Cpu) {
    cpu::jacobian_determinant(u, inverse_index_map, det, owned, nonpositive.data);
    return;
  }
#if GIGAREG_WITH_CUDA
  cuda::jacobian_determinant(ctx.stream, u, inverse_index_map, det, owned, nonpositive.data);
#else
  no_cuda(op);
#endif
}

double max_over_slices(const Context& ctx, const SlicePartials& partials, int term) {
  constexpr const char* op = "max_over_slices";
  if (term < 0 || term >= partials.terms) fail(op, "term out of range");
  if (partials.slices <= 0) return -std::numeric_limits<double>::infinity();
  require_backend_memory(ctx, op, partials.data);
  std::vector<double> host(std::size_t(partials.slices) * std::size_t(partials.terms));
  if (ctx.backend == Backend::Cpu) {
    std::copy(partials.data, partials.data + host.size(), host.begin());
  } else {
#if GIGAREG_WITH_CUDA
    cuda::copy_to_host(ctx.stream, host.data(), partials.data, host.size() * sizeof(double));
#else
    no_cuda(op);
#endif
  }
  double m = -std::numeric_limits<double>::infinity();
  for (index_t s = 0; s < partials.slices; ++s) {
    const double x = host[std::size_t(s) * std::size_t(partials.terms) + std::size_t(term)];
    if (x > m || std::isnan(x)) m = x;
    if (std::isnan(m)) break;
  }
  return m;
}

}  // namespace gigareg
